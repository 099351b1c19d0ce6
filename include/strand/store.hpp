// strand/store.hpp — where results outlive the process: a map from key to computation record.
//
//   auto store = strand::open_store("sqlite:///var/lib/app/jobs.db", {.ttl = 1h});
//   std::string key = store->create_key();
//   store->set({.key = key, .status = strand::Status::running});
//   store->update(key, [](std::optional<strand::Record> r) { r->progress = 0.5; return r; });
//   strand::Record r = store->get(key);          // a missing key reads as pending
//   store->wait_terminal(key, deadline);         // by notification where the store has one
//
// Stores: MemoryStore (this process only), FileSystemStore (a directory, a file per key, written to
// a temporary file then renamed into place), SqliteStore (WAL, busy timeout, schema version checked
// at open; many processes at once), RedisStore (a Redis server, shared by every machine that
// reaches it). `open_store(url)` takes "memory:", "file:///path", "sqlite:///path.db" and
// "redis://host:port/db". Each store writes its records in one Format (JSON or MessagePack).
//
// Every write goes through `set` or `update`; `update` is an atomic read-modify-write (a
// transaction in SQLite, a lock file in the filesystem store), which is what status changes,
// progress and the job queue's claims build on. `version` grows with every write of a record.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "strand/errors.hpp"
#include "strand/job.hpp"
#include "strand/serialize.hpp"
#include "strand/status.hpp"

namespace strand {

// What a store keeps about one computation or one job.
struct Record {
  using time_point = std::chrono::system_clock::time_point;

  // Every member has an initializer, so `{.key = k, .status = s}` compiles under -Wextra
  // (-Wmissing-field-initializers).
  std::string key{};
  Status status = Status::pending;
  nlohmann::json value{};            // the result as a document (null until completed)
  std::optional<ErrorInfo> error{};  // why it failed
  time_point created{};              // set by the store on first write when left at epoch
  std::optional<time_point> started{};
  std::optional<time_point> completed{};
  nlohmann::json metadata = nlohmann::json::object();
  double progress = 0;  // 0..1, from report_progress
  std::string progress_message{};
  std::uint64_t version = 0;  // set by the store: 1 on first write, +1 on each write
  std::optional<Job> job{};   // set on a job (strand/job_queue.hpp): what to call, its attempts

  friend bool operator==(const Record&, const Record&) = default;
};
void to_json(nlohmann::json& out, const Record& record);
void from_json(const nlohmann::json& in, Record& record);

// A key that is empty, too long (over 200 bytes), or holds '/', '\\', a NUL or a control
// character, or is "." or "..". Nothing is read or written for it.
class InvalidKey : public Error {
 public:
  InvalidKey(std::string_view key, std::string_view why);
};

// A store that cannot be opened or used: a bad URL, a directory that cannot be written, a file that
// is not an SQLite database, a schema of another version, an I/O error.
class StoreError : public Error {
 public:
  using Error::Error;
};

// What a finished computation writes over its record (see Store::finish_many).
struct Outcome {
  std::string_view key{};
  const nlohmann::json* value = nullptr;  // the result, when it completed
  const ErrorInfo* error = nullptr;       // why it failed, when it failed
  Record::time_point completed{};
};

// Throws InvalidKey if `key` cannot name a record.
void validate_key(std::string_view key);

struct StoreOptions {
  Format format = Format::json;
  // Records older than this (from `completed`, or `created` while unfinished) are expired.
  std::optional<std::chrono::seconds> ttl{};
  // On each get/set, the chance that the store also runs cleanup_expired() (as in the seed).
  double cleanup_probability = 0.0;
  // Survive a power cut, at a cost: the filesystem store fsyncs each record file and its directory,
  // the SQLite store commits with synchronous=FULL. Off by default (a record survives its process).
  bool durable = false;
};

class Store {
 public:
  using clock = std::chrono::steady_clock;
  using UpdateFn = std::function<std::optional<Record>(std::optional<Record>)>;

  virtual ~Store() = default;

  [[nodiscard]] virtual Format format() const noexcept = 0;
  // The URL open_store() would reopen this store with ("sqlite:///tmp/x.db").
  [[nodiscard]] virtual std::string url() const = 0;
  [[nodiscard]] const StoreOptions& options() const noexcept { return options_; }
  // Whether another process opening url() sees the same records (false for MemoryStore).
  [[nodiscard]] virtual bool shared_across_processes() const noexcept { return true; }

  // A new unique key (random, 32 hex digits); nothing is written yet.
  [[nodiscard]] virtual std::string create_key();

  // The record, or nullopt if there is none (or it expired). A record that does not decode reads
  // as FAILED with a strand::DecodeError as its error; other keys are unaffected.
  [[nodiscard]] virtual std::optional<Record> find(std::string_view key) = 0;
  // find() of each key, in order: in one round trip where the store can (Redis).
  [[nodiscard]] virtual std::vector<std::optional<Record>> find_many(
      std::span<const std::string> keys);
  // The record; a missing key reads as a pending record with that key.
  [[nodiscard]] Record get(std::string_view key);
  // Inserts or replaces; returns the record as written (with its version and created time).
  virtual Record set(Record record) = 0;
  // Atomic read-modify-write: `f` gets the current record (nullopt if missing) and returns the new
  // one, or nullopt to write nothing. Returns what is stored afterwards (nullopt if nothing).
  // `f` runs while the store is locked: it must not call the store itself.
  virtual std::optional<Record> update(std::string_view key, const UpdateFn& f) = 0;
  // Records each outcome unless its record is already finished (cancelled meanwhile, which is then
  // left as it is): the record becomes completed (with the value, progress 1) or failed (with the
  // error), stamped with its completed time; a missing record is created so. True where written.
  // The default runs update() for each; MemoryStore changes the records in place, SqliteStore
  // writes them all in one transaction.
  virtual std::vector<bool> finish_many(std::span<const Outcome> outcomes);
  // set() of each record (each stamped in place with its version and created time, as set()
  // returns it), then finish_many(outcomes): in one transaction where the store has them
  // (SqliteStore), so that the launch of one computation and the outcomes of others share a
  // commit. Returns finish_many's flags. The default calls set(), then finish_many().
  virtual std::vector<bool> write_many(std::span<Record> records,
                                       std::span<const Outcome> outcomes);
  // Whether writes given together to write_many cost less than given one by one (one commit for
  // them all), so that a caller gains by gathering them.
  [[nodiscard]] virtual bool groups_writes() const noexcept { return false; }
  // True if there was a record.
  virtual bool erase(std::string_view key) = 0;
  [[nodiscard]] virtual std::vector<std::string> keys() = 0;
  [[nodiscard]] virtual std::size_t size() = 0;

  [[nodiscard]] bool is_expired(const Record& record) const;
  // Removes expired records; returns how many.
  virtual std::size_t cleanup_expired() = 0;

  // Waits until the record is terminal (completed, failed, cancelled) or `deadline` passes, and
  // returns it as it is then. Writes made through any Store object of this process on the same
  // location wake it at once; writes of other processes are seen by the store's own notification
  // (inotify for the filesystem) or by polling with back-off (1 ms growing to 50 ms).
  virtual Record wait_terminal(std::string_view key, clock::time_point deadline) = 0;

 protected:
  explicit Store(StoreOptions options) : options_(options) {}
  // Runs cleanup_expired() with the configured probability; stores call it on get and set.
  void maybe_cleanup();

 private:
  StoreOptions options_;
};

// open_store("memory:"), ("file:///path/to/dir"), ("sqlite:///path/to.db"),
// ("redis://host:port/db") (port 6379 and db 0 when left out; "?prefix=p" sets the key prefix).
// A URL with another scheme, without a path, or with a bad port or database number is a StoreError
// naming the URL and the schemes it knows; a Redis server that cannot be reached is a StoreError
// saying so.
[[nodiscard]] std::shared_ptr<Store> open_store(std::string_view url, StoreOptions options = {});

}  // namespace strand
