// strand/sqlite_store.hpp — a store in one SQLite database file, shared by many processes.
//
//   auto store = strand::SqliteStore::open("/var/lib/app/jobs.db",
//                                          {.format = strand::Format::msgpack});
//   auto r = store->update(key, [](std::optional<strand::Record> r) { ... return r; });
//   std::string id = store->enqueue({.function = "resize", .args = {"a.png", 640}});  // a job
//
// The database runs in WAL mode (readers never block the writer) with `synchronous=NORMAL` (a
// commit survives a crash of the process, not necessarily a power cut; `StoreOptions::durable`
// selects `synchronous=FULL`) and a busy timeout, so many processes can use one file at once:
// `update` is a `BEGIN IMMEDIATE` transaction, `set` a single UPSERT statement.
//
// Schema version 2 (kept in `PRAGMA user_version`, checked at open; a version-1 database is
// migrated in place at open, inside one `BEGIN IMMEDIATE` transaction; a database of another
// version is a StoreError saying which):
//
//   CREATE TABLE strand_records (
//     key          TEXT PRIMARY KEY,
//     status       TEXT NOT NULL,     -- "pending", "running", ... (readable with sqlite3)
//     record       BLOB NOT NULL,     -- the whole Record in the store's Format
//     created_ms   INTEGER NOT NULL,  -- Unix time in ms, for TTL queries
//     completed_ms INTEGER,
//     version      INTEGER NOT NULL,  -- 1 on first write, +1 on each write
//     -- version 2: the job queue's columns, copied from record.job on every write
//     queue        TEXT,              -- the job's queue while it may still run (queued, running)
//     priority     INTEGER,           -- NULL for a record that is not a job
//     run_at_ms    INTEGER,           -- not claimable before this (SQLite's clock)
//     lease_ms     INTEGER,           -- while running: when the lease runs out
//     token        INTEGER            -- the fencing token (claims so far)
//   ) WITHOUT ROWID;
//   CREATE INDEX strand_jobs_claim ON strand_records (queue, status, priority DESC, run_at_ms)
//     WHERE queue IS NOT NULL;       -- only live jobs: claim is a short walk of this index
//
// Records and jobs share the key space. A version-1 file holds no jobs (that version had no queue),
// so its migration adds the columns and the index and leaves every row as it is.
//
// The job queue (strand/job_queue.hpp) runs on SQLite's own clock (`julianday('now')`, read inside
// the transaction that uses it, or just before a compare-and-set), never a worker's. A claim is one
// `BEGIN IMMEDIATE` transaction: an index walk per queue finds the claimable keys in claim order,
// then each record is decoded, changed by the state change every store shares, and written back.
// complete, fail, release and cancel_job are each one compare-and-set: the row is read (a
// fenced-off worker is turned away by its status and token columns, before any decoding), the
// record changed and encoded outside the store's lock, and written by one UPDATE that succeeds only
// if the row still has the version read (every write raises it; else it starts again). heartbeat is
// one transaction. A job whose record does not decode is written FAILED with the
// strand::DecodeError reason, and the claim goes on.
//
// One connection per store object, guarded by a mutex, with its statements prepared once. After a
// fork() the child opens a fresh connection on first use (an SQLite connection must not cross a
// fork); the inherited one is left alone.
//
// wait_terminal and wait_for_jobs wake at once for writes made in this process (a notifier shared
// by every SqliteStore on the same file) and see other processes' writes by polling with back-off
// (1 ms growing to 50 ms), each poll a cheap `PRAGMA data_version`. wait_for_jobs also wakes when
// the earliest delayed job or lease of its queues comes due (one MIN() query per queue).
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "strand/job_queue.hpp"
#include "strand/store.hpp"

namespace strand {

class SqliteStore final : public Store, public JobQueue {
 public:
  using clock = Store::clock;  // the same steady clock as JobQueue::clock

  static constexpr int kSchemaVersion = 2;

  // Opens or creates the database at `path` (its directory must exist). Throws StoreError naming
  // the file if it cannot be opened, is not an SQLite database, or has another schema version.
  // `busy_timeout` is how long a statement waits for another process's lock before failing.
  static std::shared_ptr<SqliteStore> open(
      const std::filesystem::path& path, StoreOptions options = {},
      std::chrono::milliseconds busy_timeout = std::chrono::seconds(10));

  ~SqliteStore() override;
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  // The canonical path of the database file.
  [[nodiscard]] const std::filesystem::path& path() const noexcept;

  [[nodiscard]] Format format() const noexcept override { return options().format; }
  // "sqlite:///canonical/path.db".
  [[nodiscard]] std::string url() const override;
  [[nodiscard]] std::optional<Record> find(std::string_view key) override;
  [[nodiscard]] std::vector<std::optional<Record>> find_many(
      std::span<const std::string> keys) override;
  Record set(Record record) override;
  std::optional<Record> update(std::string_view key, const UpdateFn& f) override;
  std::vector<bool> finish_many(std::span<const Outcome> outcomes) override;
  std::vector<bool> write_many(std::span<Record> records,
                               std::span<const Outcome> outcomes) override;
  [[nodiscard]] bool groups_writes() const noexcept override { return true; }
  bool erase(std::string_view key) override;
  [[nodiscard]] std::vector<std::string> keys() override;
  [[nodiscard]] std::size_t size() override;
  std::size_t cleanup_expired() override;
  Record wait_terminal(std::string_view key, clock::time_point deadline) override;

  // The job queue (see strand/job_queue.hpp and the top of this file). now() is SQLite's clock.
  [[nodiscard]] Record::time_point now() override;
  std::vector<std::string> enqueue_many(std::span<const JobRequest> requests) override;
  std::vector<Lease> claim(std::span<const std::string> queues, std::string_view worker,
                           std::chrono::milliseconds lease, std::size_t max = 1) override;
  LeaseState heartbeat(std::string_view id, std::uint64_t token,
                       std::chrono::milliseconds lease) override;
  bool complete(std::string_view id, std::uint64_t token, const nlohmann::json& value) override;
  std::vector<bool> complete_many(std::span<const Completion> completions) override;
  bool fail(std::string_view id, std::uint64_t token, const ErrorInfo& error,
            bool retryable = true) override;
  bool release(std::string_view id, std::uint64_t token) override;
  bool cancel_job(std::string_view id) override;
  void wait_for_jobs(std::span<const std::string> queues, JobQueue::clock::time_point deadline,
                     std::stop_token stop) override;

 private:
  struct Impl;
  SqliteStore(StoreOptions options, std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace strand
