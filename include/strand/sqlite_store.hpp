// strand/sqlite_store.hpp — a store in one SQLite database file, shared by many processes.
//
//   auto store = strand::SqliteStore::open("/var/lib/app/jobs.db", {.format =
//   strand::Format::msgpack}); auto r = store->update(key, [](std::optional<strand::Record> r) {
//   ... return r; });  // one transaction
//
// The database runs in WAL mode (readers never block the writer) with `synchronous=NORMAL` (a
// commit survives a crash of the process, not necessarily a power cut; `StoreOptions::durable`
// selects `synchronous=FULL`) and a busy timeout, so many processes can use one file at once:
// `update` is a `BEGIN IMMEDIATE` transaction, `set` a single UPSERT statement.
//
// Schema version 1 (kept in `PRAGMA user_version`, checked at open; a database of another version
// is a StoreError saying which):
//
//   CREATE TABLE strand_records (
//     key          TEXT PRIMARY KEY,
//     status       TEXT NOT NULL,     -- "pending", "running", "completed", ... (readable with
//     sqlite3) record       BLOB NOT NULL,     -- the whole Record in the store's Format created_ms
//     INTEGER NOT NULL,  -- Unix time in ms, for TTL queries completed_ms INTEGER, version INTEGER
//     NOT NULL   -- 1 on first write, +1 on each write
//   ) WITHOUT ROWID;
//
// The job queue (a later schema version) adds its own columns (queue, priority, run_at, lease
// token and expiry, attempts) and indexes beside these; records and jobs share the key space.
//
// One connection per store object, guarded by a mutex, with its statements prepared once. After a
// fork() the child opens a fresh connection on first use (an SQLite connection must not cross a
// fork); the inherited one is left alone.
//
// wait_terminal wakes at once for writes made in this process (a notifier shared by every
// SqliteStore on the same file) and sees other processes' writes by polling with back-off (1 ms
// growing to 50 ms), each poll a cheap `PRAGMA data_version`.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "strand/store.hpp"

namespace strand {

class SqliteStore final : public Store {
 public:
  static constexpr int kSchemaVersion = 1;

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
  Record set(Record record) override;
  std::optional<Record> update(std::string_view key, const UpdateFn& f) override;
  bool erase(std::string_view key) override;
  [[nodiscard]] std::vector<std::string> keys() override;
  [[nodiscard]] std::size_t size() override;
  std::size_t cleanup_expired() override;
  Record wait_terminal(std::string_view key, clock::time_point deadline) override;

 private:
  struct Impl;
  SqliteStore(StoreOptions options, std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace strand
