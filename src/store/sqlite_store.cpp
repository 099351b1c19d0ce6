#include "strand/sqlite_store.hpp"

#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "../core/fork_hooks.hpp"
#include "job_logic.hpp"
#include "store_detail.hpp"

namespace strand {
namespace {

// Version 2 of the schema: version 1's table plus the job queue's columns and index.
constexpr const char* kCreateSchema = R"sql(
CREATE TABLE strand_records (
  key          TEXT PRIMARY KEY,
  status       TEXT NOT NULL,
  record       BLOB NOT NULL,
  created_ms   INTEGER NOT NULL,
  completed_ms INTEGER,
  version      INTEGER NOT NULL,
  queue        TEXT,
  priority     INTEGER,
  run_at_ms    INTEGER,
  lease_ms     INTEGER,
  token        INTEGER
) WITHOUT ROWID;
CREATE INDEX strand_jobs_claim ON strand_records (queue, status, priority DESC, run_at_ms)
  WHERE queue IS NOT NULL;
PRAGMA user_version = 2;
)sql";

// Version 1 -> 2, run inside the BEGIN IMMEDIATE that checked the version. Version 1 had no job
// queue, so no row is a job: the new columns stay NULL.
constexpr const char* kMigrate1To2 = R"sql(
ALTER TABLE strand_records ADD COLUMN queue TEXT;
ALTER TABLE strand_records ADD COLUMN priority INTEGER;
ALTER TABLE strand_records ADD COLUMN run_at_ms INTEGER;
ALTER TABLE strand_records ADD COLUMN lease_ms INTEGER;
ALTER TABLE strand_records ADD COLUMN token INTEGER;
CREATE INDEX strand_jobs_claim ON strand_records (queue, status, priority DESC, run_at_ms)
  WHERE queue IS NOT NULL;
PRAGMA user_version = 2;
)sql";

// set() is one statement: the version and the created time come from the row it replaces, so no
// transaction is needed around it. The record blob is written as given; find() takes version and
// created from their columns. The job columns (?7..?11) are copied from record.job.
constexpr const char* kUpsert = R"sql(
INSERT INTO strand_records (key, status, record, created_ms, completed_ms, version,
                            queue, priority, run_at_ms, lease_ms, token)
VALUES (?1, ?2, ?3, coalesce(?4, ?5), ?6, 1, ?7, ?8, ?9, ?10, ?11)
ON CONFLICT (key) DO UPDATE SET
  status = excluded.status, record = excluded.record,
  created_ms = coalesce(?4, strand_records.created_ms),
  completed_ms = excluded.completed_ms, version = strand_records.version + 1,
  queue = excluded.queue, priority = excluded.priority, run_at_ms = excluded.run_at_ms,
  lease_ms = excluded.lease_ms, token = excluded.token
RETURNING version, created_ms
)sql";

// A job's compare-and-set: the write happens only if the row is still the version read.
constexpr const char* kUpdateIfVersion = R"sql(
UPDATE strand_records SET
  status = ?2, record = ?3, completed_ms = ?6, version = version + 1,
  queue = ?7, priority = ?8, run_at_ms = ?9, lease_ms = ?10, token = ?11
WHERE key = ?1 AND version = ?12
RETURNING version
)sql";

// A new job; an existing key (the idempotency key's first job) stays as it is.
constexpr const char* kInsertJob = R"sql(
INSERT INTO strand_records (key, status, record, created_ms, completed_ms, version,
                            queue, priority, run_at_ms, lease_ms, token)
VALUES (?1, 'queued', ?2, ?3, NULL, 1, ?4, ?5, ?6, NULL, 0)
ON CONFLICT (key) DO NOTHING
)sql";

// SQLite's clock in Unix ms (SQLite 3.40 has no unixepoch('subsec')): the job queue's only clock.
constexpr const char* kNow =
    "SELECT CAST(round((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)";

// The claimable jobs of one queue in claim order, each a walk of strand_jobs_claim (EXPLAIN QUERY
// PLAN: "SEARCH strand_records USING COVERING INDEX strand_jobs_claim (queue=? AND status=?)", no
// sort; the expired-lease one reads lease_ms from the table, for the few running jobs).
constexpr const char* kClaimQueued =
    "SELECT key, priority, run_at_ms FROM strand_records "
    "WHERE queue = ?1 AND status = 'queued' AND run_at_ms <= ?2 "
    "ORDER BY priority DESC, run_at_ms, key LIMIT ?3";
constexpr const char* kClaimExpired =
    "SELECT key, priority, run_at_ms FROM strand_records "
    "WHERE queue = ?1 AND status = 'running' AND lease_ms < ?2 "
    "ORDER BY priority DESC, run_at_ms, key LIMIT ?3";
// When the next job of a queue comes due: its earliest run_at, or its earliest lease expiry.
constexpr const char* kNextRunAt =
    "SELECT min(run_at_ms) FROM strand_records WHERE queue = ?1 AND status = 'queued'";
constexpr const char* kNextLease =
    "SELECT min(lease_ms) FROM strand_records WHERE queue = ?1 AND status = 'running'";

// A row's expiry in SQL: not expired <=> coalesce(completed_ms, created_ms) >= the cutoff (now -
// ttl). find reads status and token too: the job queue's compare-and-set looks at them before it
// decodes anything.
constexpr const char* kFind =
    "SELECT record, version, created_ms, status, token FROM strand_records WHERE key = ?1";
constexpr const char* kErase = "DELETE FROM strand_records WHERE key = ?1";
constexpr const char* kKeys =
    "SELECT key FROM strand_records WHERE ?1 IS NULL OR coalesce(completed_ms, created_ms) >= ?1 "
    "ORDER BY key";
constexpr const char* kCount =
    "SELECT count(*) FROM strand_records WHERE ?1 IS NULL OR coalesce(completed_ms, created_ms) "
    ">= ?1";
constexpr const char* kCleanup =
    "DELETE FROM strand_records WHERE coalesce(completed_ms, created_ms) < ?1";

Record::time_point from_unix_ms(std::int64_t ms) {
  return Record::time_point(std::chrono::milliseconds(ms));
}

// A claimable job found by the index walk, before its record is read.
struct Candidate {
  std::string key;
  std::int64_t priority = 0;
  std::int64_t run_at = 0;
};

}  // namespace

struct SqliteStore::Impl {
  std::filesystem::path path;
  std::chrono::milliseconds busy_timeout{};
  std::chrono::steady_clock::time_point busy_since{};  // when the current wait for a lock began
  bool durable = false;
  std::shared_ptr<detail::Notifier> notifier;

  std::mutex mutex;  // guards everything below: one connection, used by one thread at a time
  pid_t pid = 0;     // the process the connection was opened in
  sqlite3* db = nullptr;
  struct Statements {
    sqlite3_stmt* find = nullptr;
    sqlite3_stmt* upsert = nullptr;
    sqlite3_stmt* erase = nullptr;
    sqlite3_stmt* keys = nullptr;
    sqlite3_stmt* count = nullptr;
    sqlite3_stmt* cleanup = nullptr;
    sqlite3_stmt* begin = nullptr;
    sqlite3_stmt* begin_read = nullptr;
    sqlite3_stmt* commit = nullptr;
    sqlite3_stmt* rollback = nullptr;
    sqlite3_stmt* data_version = nullptr;
    sqlite3_stmt* now = nullptr;
    sqlite3_stmt* insert_job = nullptr;
    sqlite3_stmt* update_if_version = nullptr;
    sqlite3_stmt* claim_queued = nullptr;
    sqlite3_stmt* claim_expired = nullptr;
    sqlite3_stmt* next_run_at = nullptr;
    sqlite3_stmt* next_lease = nullptr;
  } st;

  ~Impl() { close(); }

  void close() noexcept {
    for (sqlite3_stmt* s :
         {st.find, st.upsert, st.erase, st.keys, st.count, st.cleanup, st.begin, st.begin_read,
          st.commit, st.rollback, st.data_version, st.now, st.insert_job, st.update_if_version,
          st.claim_queued, st.claim_expired, st.next_run_at, st.next_lease}) {
      sqlite3_finalize(s);
    }
    st = {};
    if (db != nullptr) sqlite3_close_v2(db);
    db = nullptr;
  }

  [[noreturn]] void fail(std::string_view what) const {
    fail(what, db != nullptr ? sqlite3_errmsg(db) : "out of memory");
  }
  [[noreturn]] void fail(std::string_view what, std::string_view why) const {
    throw StoreError("strand: SQLite store \"" + path.string() + "\": " + std::string(what) + ": " +
                     std::string(why));
  }

  void check(int rc, std::string_view what) const {
    if (rc != SQLITE_OK && rc != SQLITE_ROW && rc != SQLITE_DONE) fail(what);
  }

  sqlite3_stmt* prepare(const char* sql) {
    sqlite3_stmt* s = nullptr;
    check(sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr),
          "cannot prepare a statement");
    return s;
  }

  void exec(const char* sql, std::string_view what) {
    char* message = nullptr;
    if (sqlite3_exec(db, sql, nullptr, nullptr, &message) != SQLITE_OK) {
      const std::string why = message != nullptr ? message : sqlite3_errmsg(db);
      sqlite3_free(message);
      fail(what, why);
    }
  }

  int user_version() {
    sqlite3_stmt* s = prepare("PRAGMA user_version");
    const int rc = sqlite3_step(s);
    const int version = rc == SQLITE_ROW ? sqlite3_column_int(s, 0) : -1;
    sqlite3_finalize(s);
    check(rc, "cannot read the schema version");
    return version;
  }

  // Another connection holds the lock: wait a little and try again, until busy_timeout. SQLite's
  // own busy timeout sleeps 1 ms, then 2, 5, 10 ms...: far longer than a job queue's transactions
  // (tens of microseconds), so two worker processes would spend most of their time asleep. This
  // starts at 20 us and doubles up to 1 ms. Called by SQLite with the connection in use (so
  // under the store's mutex): busy_since needs no lock of its own.
  static int on_busy(void* self, int count) noexcept {
    auto& impl = *static_cast<Impl*>(self);
    const auto now = std::chrono::steady_clock::now();
    if (count == 0) impl.busy_since = now;
    if (now - impl.busy_since >= impl.busy_timeout) return 0;  // give up: SQLITE_BUSY
    std::this_thread::sleep_for(
        std::chrono::microseconds(std::min(20 << std::min(count, 6), 1000)));
    return 1;
  }

  // Opens the connection, sets it up and checks (or creates) the schema.
  // The caller holds a ForkQuiet: no fork while SQLite's global mutexes may be held.
  void connect() {
    const int rc =
        sqlite3_open_v2(path.c_str(), &db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) fail("cannot open", db != nullptr ? sqlite3_errmsg(db) : "out of memory");
    pid = ::getpid();
    sqlite3_busy_handler(db, &Impl::on_busy, this);
    // The first statement reads the header: a file that is not a database fails here.
    int version = user_version();
    exec("PRAGMA journal_mode = WAL", "cannot switch to WAL mode");
    exec(durable ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL",
         "cannot set synchronous");
    if (version == 0) {
      exec("BEGIN IMMEDIATE", "cannot create the schema");
      try {
        version = user_version();  // another process may have created it meanwhile
        if (version == 0) {
          exec(kCreateSchema, "cannot create the schema");
          version = kSchemaVersion;
        }
        exec("COMMIT", "cannot create the schema");
      } catch (...) {
        sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
        throw;
      }
    }
    if (version == 1) {
      exec("BEGIN IMMEDIATE", "cannot migrate the schema to version 2");
      try {
        version = user_version();  // another process may have migrated it meanwhile
        if (version == 1) {
          exec(kMigrate1To2, "cannot migrate the schema to version 2");
          version = kSchemaVersion;
        }
        exec("COMMIT", "cannot migrate the schema to version 2");
      } catch (...) {
        sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
        throw;
      }
    }
    if (version != kSchemaVersion) {
      fail("it has schema version " + std::to_string(version),
           "this strand reads schema version " + std::to_string(kSchemaVersion));
    }
    st.find = prepare(kFind);
    st.upsert = prepare(kUpsert);
    st.erase = prepare(kErase);
    st.keys = prepare(kKeys);
    st.count = prepare(kCount);
    st.cleanup = prepare(kCleanup);
    st.begin = prepare("BEGIN IMMEDIATE");
    st.begin_read = prepare("BEGIN");
    st.commit = prepare("COMMIT");
    st.rollback = prepare("ROLLBACK");
    st.data_version = prepare("PRAGMA data_version");
    st.now = prepare(kNow);
    st.insert_job = prepare(kInsertJob);
    st.update_if_version = prepare(kUpdateIfVersion);
    st.claim_queued = prepare(kClaimQueued);
    st.claim_expired = prepare(kClaimExpired);
    st.next_run_at = prepare(kNextRunAt);
    st.next_lease = prepare(kNextLease);
  }

  // Called with the mutex held before any use: a forked child opens its own connection (the
  // parent's must not be used, nor closed, here).
  void ensure_connected() {
    if (pid == ::getpid()) return;
    st = {};
    db = nullptr;
    connect();
  }

  // Runs a statement to its end (binding done by the caller), then resets it.
  void run(sqlite3_stmt* s, std::string_view what) {
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    check(rc, what);
  }

  std::optional<Record> find(std::string_view key, Format format) {
    sqlite3_stmt* s = st.find;
    sqlite3_bind_text(s, 1, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
    const int rc = sqlite3_step(s);
    std::optional<Record> out;
    if (rc == SQLITE_ROW) {
      const auto* data = static_cast<const char*>(sqlite3_column_blob(s, 0));
      const std::string_view bytes(data, static_cast<std::size_t>(sqlite3_column_bytes(s, 0)));
      out = detail::decode_record(bytes, key, path.string(), format);
      out->version = static_cast<std::uint64_t>(sqlite3_column_int64(s, 1));
      out->created = Record::time_point(std::chrono::milliseconds(sqlite3_column_int64(s, 2)));
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    check(rc, "cannot read a record");
    return out;
  }

  // Binds what every write of `record` sets: ?1 key, ?2 status, ?3 the blob `bytes`, ?6
  // completed_ms and the job columns ?7..?11 from record.job.
  static void bind_columns(sqlite3_stmt* s, const Record& record, const std::string& bytes) {
    const std::string_view status = to_string(record.status);
    sqlite3_bind_text(s, 1, record.key.data(), static_cast<int>(record.key.size()), SQLITE_STATIC);
    sqlite3_bind_text(s, 2, status.data(), static_cast<int>(status.size()), SQLITE_STATIC);
    sqlite3_bind_blob(s, 3, bytes.data(), static_cast<int>(bytes.size()), SQLITE_STATIC);
    if (record.completed) sqlite3_bind_int64(s, 6, detail::to_unix_ms(*record.completed));
    if (const std::optional<Job>& job = record.job) {
      // Only a job that may still run is in the claim index (queue set).
      if (record.status == Status::queued || record.status == Status::running) {
        sqlite3_bind_text(s, 7, job->queue.data(), static_cast<int>(job->queue.size()),
                          SQLITE_STATIC);
      }
      sqlite3_bind_int64(s, 8, job->priority);
      sqlite3_bind_int64(s, 9, detail::to_unix_ms(job->run_at));
      if (record.status == Status::running && job->lease_expires) {
        sqlite3_bind_int64(s, 10, detail::to_unix_ms(*job->lease_expires));
      }
      sqlite3_bind_int64(s, 11, static_cast<std::int64_t>(job->token));
    }
  }

  // Writes `record` (already encoded as `bytes`) only if its row is still at version `expected`:
  // a compare-and-set on everything (every write raises the version). True if written.
  bool write_if_version(Record& record, const std::string& bytes, std::uint64_t expected) {
    sqlite3_stmt* s = st.update_if_version;
    bind_columns(s, record, bytes);
    sqlite3_bind_int64(s, 12, static_cast<std::int64_t>(expected));
    const int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) record.version = static_cast<std::uint64_t>(sqlite3_column_int64(s, 0));
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    check(rc, "cannot write a job");
    return rc == SQLITE_ROW;
  }

  void write(Record& record, Format format) {
    const std::string bytes = detail::encode_record(record, format);
    sqlite3_stmt* s = st.upsert;
    bind_columns(s, record, bytes);
    if (record.created != Record::time_point{}) {
      sqlite3_bind_int64(s, 4, detail::to_unix_ms(record.created));
    }
    sqlite3_bind_int64(s, 5, detail::to_unix_ms(std::chrono::system_clock::now()));
    const int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
      record.version = static_cast<std::uint64_t>(sqlite3_column_int64(s, 0));
      record.created = Record::time_point(std::chrono::milliseconds(sqlite3_column_int64(s, 1)));
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    check(rc, "cannot write a record");
  }

  // The cutoff below which a row is expired, or nullopt without a TTL.
  static std::optional<std::int64_t> cutoff(const StoreOptions& options) {
    if (!options.ttl) return std::nullopt;
    return detail::to_unix_ms(std::chrono::system_clock::now()) -
           std::chrono::duration_cast<std::chrono::milliseconds>(*options.ttl).count();
  }

  // SQLite's clock, in Unix ms.
  std::int64_t now_ms() {
    sqlite3_stmt* s = st.now;
    const int rc = sqlite3_step(s);
    const std::int64_t ms = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    check(rc, "cannot read SQLite's clock");
    return ms;
  }

  // Runs `f` holding the connection (opened in this process), with no fork meanwhile.
  template <class F>
  decltype(auto) locked(F&& f) {
    std::lock_guard lock(mutex);
    const detail::ForkQuiet quiet;  // no fork in the middle of an SQLite call
    ensure_connected();
    return f();
  }

  // Runs `f` inside BEGIN IMMEDIATE ... COMMIT (rolled back if it throws). Called locked.
  template <class F>
  decltype(auto) transaction(F&& f) {
    return transaction(st.begin, std::forward<F>(f));
  }
  // The same for reads only: a deferred BEGIN, which takes no write lock.
  template <class F>
  decltype(auto) read_transaction(F&& f) {
    return transaction(st.begin_read, std::forward<F>(f));
  }
  template <class F>
  decltype(auto) transaction(sqlite3_stmt* begin, F&& f) {
    run(begin, "cannot begin a transaction");
    try {
      decltype(auto) result = f();
      run(st.commit, "cannot commit");
      return result;
    } catch (...) {
      sqlite3_reset(st.rollback);
      sqlite3_step(st.rollback);
      sqlite3_reset(st.rollback);
      throw;
    }
  }

  // A row as stored: its blob still encoded.
  struct Row {
    std::string bytes;
    std::uint64_t version = 0;
    std::int64_t created_ms = 0;
  };

  // The row of job `id` if `admit(status, token)` accepts it (a row that is not a job has a NULL
  // token: -1 here). nullopt if there is no row or it is not admitted.
  template <class Admit>
  std::optional<Row> load_row(std::string_view id, Admit&& admit) {
    sqlite3_stmt* s = st.find;
    sqlite3_bind_text(s, 1, id.data(), static_cast<int>(id.size()), SQLITE_STATIC);
    const int rc = sqlite3_step(s);
    std::optional<Row> out;
    if (rc == SQLITE_ROW) {
      const std::string_view status(reinterpret_cast<const char*>(sqlite3_column_text(s, 3)),
                                    static_cast<std::size_t>(sqlite3_column_bytes(s, 3)));
      const std::int64_t token =
          sqlite3_column_type(s, 4) == SQLITE_NULL ? -1 : sqlite3_column_int64(s, 4);
      if (admit(status, token)) {
        const auto* data = static_cast<const char*>(sqlite3_column_blob(s, 0));
        out =
            Row{std::string(data, static_cast<std::size_t>(sqlite3_column_bytes(s, 0))),
                static_cast<std::uint64_t>(sqlite3_column_int64(s, 1)), sqlite3_column_int64(s, 2)};
      }
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    check(rc, "cannot read a job");
    return out;
  }

  Record decode(const Row& row, std::string_view id, Format format) const {
    Record r = detail::decode_record(row.bytes, id, path.string(), format);
    r.version = row.version;
    r.created = from_unix_ms(row.created_ms);
    return r;
  }

  // The record of job `id`, decoded only if `admit` accepts its row (see load_row).
  template <class Admit>
  std::optional<Record> load_job(std::string_view id, Format format, Admit&& admit) {
    const std::optional<Row> row = load_row(id, admit);
    if (!row) return std::nullopt;
    return decode(*row, id, format);
  }

  // Adds up to `max` claimable jobs of `queue` found by `s` (kClaimQueued or kClaimExpired).
  void candidates(sqlite3_stmt* s, const std::string& queue, std::int64_t now, std::size_t max,
                  std::vector<Candidate>& out) {
    sqlite3_bind_text(s, 1, queue.data(), static_cast<int>(queue.size()), SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, now);
    sqlite3_bind_int64(s, 3, static_cast<std::int64_t>(max));
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      out.push_back({std::string(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)),
                                 static_cast<std::size_t>(sqlite3_column_bytes(s, 0))),
                     sqlite3_column_int64(s, 1), sqlite3_column_int64(s, 2)});
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    check(rc, "cannot find claimable jobs");
  }

  // The smallest value `s` (kNextRunAt or kNextLease) finds in `queue`, if any.
  std::optional<std::int64_t> next(sqlite3_stmt* s, const std::string& queue) {
    sqlite3_bind_text(s, 1, queue.data(), static_cast<int>(queue.size()), SQLITE_STATIC);
    const int rc = sqlite3_step(s);
    std::optional<std::int64_t> out;
    if (rc == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL) {
      out = sqlite3_column_int64(s, 0);
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    check(rc, "cannot find when the next job is due");
    return out;
  }

  // One compare-and-set on job `id`: if `admit(status, token)` accepts its row, `change(record,
  // now)` may change the decoded record, which is then written if the row is still the version
  // read (else all again: another write came between). The decoding, the change and the encoding
  // happen outside the lock, so threads sharing this store overlap them with each other's SQLite
  // work; the write itself is one autocommitted UPDATE. True if the record was changed.
  // With `held_token`, a job this object claimed under that token starts from the record as the
  // claim wrote it (detail::HeldJobs): no read, no decode.
  template <class Admit, class Change>
  bool change_job(std::string_view id, Format format, Admit&& admit, Change&& change,
                  std::optional<std::uint64_t> held_token = std::nullopt) {
    validate_key(id);
    std::optional<Record> from_claim = held_token ? held.recall(id, *held_token) : std::nullopt;
    for (;;) {
      Record r;
      std::uint64_t version = 0;
      std::int64_t now = 0;
      if (from_claim) {
        r = std::move(*from_claim);
        from_claim.reset();
        version = r.version;
        now = locked([&] { return now_ms(); });
      } else {
        std::optional<Row> row;
        locked([&] {
          now = now_ms();
          row = load_row(id, admit);
        });
        if (!row) {
          held.forget(id);
          return false;
        }
        r = decode(*row, id, format);
        version = row->version;
      }
      if (!r.job || !change(r, from_unix_ms(now))) {
        held.forget(id);
        return false;
      }
      const std::string bytes = detail::encode_record(r, format);
      if (locked([&] { return write_if_version(r, bytes, version); })) {
        if (r.status == Status::running) {
          held.remember(r);
        } else {
          held.forget(id);
        }
        notifier->notify(id);
        return true;
      }
      held.forget(id);  // changed meanwhile: read it
    }
  }

  detail::HeldJobs held;

  std::int64_t data_version() {
    sqlite3_stmt* s = st.data_version;
    const int rc = sqlite3_step(s);
    const std::int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    sqlite3_reset(s);
    check(rc, "cannot read the data version");
    return v;
  }
};

std::shared_ptr<SqliteStore> SqliteStore::open(const std::filesystem::path& path,
                                               StoreOptions options,
                                               std::chrono::milliseconds busy_timeout) {
  auto impl = std::make_unique<Impl>();
  std::error_code error;
  impl->path = std::filesystem::weakly_canonical(path, error);
  if (error) {
    throw StoreError("strand: cannot open the SQLite store \"" + path.string() +
                     "\": " + error.message());
  }
  impl->busy_timeout = busy_timeout;
  impl->durable = options.durable;
  try {
    const detail::ForkQuiet quiet;
    impl->connect();
  } catch (const StoreError& e) {
    // Say which file, and why, in the words of SQLite ("file is not a database").
    throw StoreError(std::string("strand: cannot open the SQLite store \"") + impl->path.string() +
                     "\": " +
                     std::string(std::string_view(e.what()).substr(
                         std::string_view(e.what()).find("\": ") + 3)));
  }
  impl->notifier = detail::Notifier::at("sqlite://" + impl->path.string());
  return std::shared_ptr<SqliteStore>(new SqliteStore(options, std::move(impl)));
}

SqliteStore::SqliteStore(StoreOptions options, std::unique_ptr<Impl> impl)
    : Store(options), impl_(std::move(impl)) {}

SqliteStore::~SqliteStore() {
  // A forked child must not close the parent's connection.
  if (impl_->pid != ::getpid()) {
    impl_->st = {};
    impl_->db = nullptr;
  }
}

const std::filesystem::path& SqliteStore::path() const noexcept {
  return impl_->path;
}

std::string SqliteStore::url() const {
  return "sqlite://" + impl_->path.string();
}

std::optional<Record> SqliteStore::find(std::string_view key) {
  validate_key(key);
  maybe_cleanup();
  std::optional<Record> record;
  {
    std::lock_guard lock(impl_->mutex);
    const detail::ForkQuiet quiet;  // no fork in the middle of an SQLite call
    impl_->ensure_connected();
    record = impl_->find(key, format());
  }
  if (record && is_expired(*record)) return std::nullopt;
  return record;
}

std::vector<std::optional<Record>> SqliteStore::find_many(std::span<const std::string> keys) {
  for (const std::string& key : keys) validate_key(key);
  maybe_cleanup();
  // One read transaction for them all (an autocommitted SELECT opens and closes one each, with
  // its locks), and the records decoded after the connection is let go.
  std::vector<std::optional<Impl::Row>> rows;
  rows.reserve(keys.size());
  impl_->locked([&] {
    impl_->read_transaction([&] {
      for (const std::string& key : keys) {
        rows.push_back(impl_->load_row(key, [](std::string_view, std::int64_t) { return true; }));
      }
      return 0;
    });
  });
  std::vector<std::optional<Record>> out;
  out.reserve(keys.size());
  for (std::size_t i = 0; i < keys.size(); ++i) {
    std::optional<Record> r;
    if (rows[i]) r = impl_->decode(*rows[i], keys[i], format());
    if (r && is_expired(*r)) r.reset();
    out.push_back(std::move(r));
  }
  return out;
}

Record SqliteStore::set(Record record) {
  validate_key(record.key);
  maybe_cleanup();
  {
    std::lock_guard lock(impl_->mutex);
    const detail::ForkQuiet quiet;  // no fork in the middle of an SQLite call
    impl_->ensure_connected();
    impl_->write(record, format());
  }
  impl_->notifier->notify(record.key);
  return record;
}

std::optional<Record> SqliteStore::update(std::string_view key, const UpdateFn& f) {
  validate_key(key);
  std::optional<Record> next;
  {
    std::lock_guard lock(impl_->mutex);
    const detail::ForkQuiet quiet;  // no fork in the middle of an SQLite call
    impl_->ensure_connected();
    impl_->run(impl_->st.begin, "cannot begin a transaction");
    try {
      std::optional<Record> current = impl_->find(key, format());
      if (current && is_expired(*current)) current.reset();
      next = f(current);
      if (!next) {
        impl_->run(impl_->st.commit, "cannot commit");
        return current;
      }
      next->key = std::string(key);
      // The version continues from the row (even an expired one); created as the caller left it or
      // from the live record.
      if (next->created == Record::time_point{} && current) next->created = current->created;
      impl_->write(*next, format());
      impl_->run(impl_->st.commit, "cannot commit");
    } catch (...) {
      sqlite3_reset(impl_->st.rollback);
      sqlite3_step(impl_->st.rollback);
      sqlite3_reset(impl_->st.rollback);
      throw;
    }
  }
  impl_->notifier->notify(key);
  return next;
}

std::vector<bool> SqliteStore::finish_many(std::span<const Outcome> outcomes) {
  return write_many({}, outcomes);
}

std::vector<bool> SqliteStore::write_many(std::span<Record> records,
                                          std::span<const Outcome> outcomes) {
  for (const Record& record : records) validate_key(record.key);
  for (const Outcome& outcome : outcomes) validate_key(outcome.key);
  maybe_cleanup();
  // One transaction for them all: a commit (the WAL append and its locks) is most of a write's
  // cost, and the writes gathered here share it.
  std::vector<bool> written(outcomes.size(), false);
  impl_->locked([&] {
    impl_->transaction([&] {
      for (Record& record : records) impl_->write(record, format());
      for (std::size_t i = 0; i < outcomes.size(); ++i) {
        std::optional<Record> r = impl_->find(outcomes[i].key, format());
        if (r && is_expired(*r)) r.reset();
        if (!detail::apply_outcome(r, outcomes[i])) continue;
        r->key = std::string(outcomes[i].key);
        impl_->write(*r, format());
        written[i] = true;
      }
      return 0;
    });
  });
  for (const Record& record : records) impl_->notifier->notify(record.key);
  for (std::size_t i = 0; i < outcomes.size(); ++i) {
    if (written[i]) impl_->notifier->notify(outcomes[i].key);
  }
  return written;
}

bool SqliteStore::erase(std::string_view key) {
  validate_key(key);
  std::lock_guard lock(impl_->mutex);
  const detail::ForkQuiet quiet;  // no fork in the middle of an SQLite call
  impl_->ensure_connected();
  sqlite3_bind_text(impl_->st.erase, 1, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
  impl_->run(impl_->st.erase, "cannot erase a record");
  return sqlite3_changes(impl_->db) > 0;
}

std::vector<std::string> SqliteStore::keys() {
  std::lock_guard lock(impl_->mutex);
  const detail::ForkQuiet quiet;  // no fork in the middle of an SQLite call
  impl_->ensure_connected();
  sqlite3_stmt* s = impl_->st.keys;
  if (const auto cut = Impl::cutoff(options())) sqlite3_bind_int64(s, 1, *cut);
  std::vector<std::string> out;
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    out.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)),
                     static_cast<std::size_t>(sqlite3_column_bytes(s, 0)));
  }
  sqlite3_reset(s);
  sqlite3_clear_bindings(s);
  impl_->check(rc, "cannot list the keys");
  return out;
}

std::size_t SqliteStore::size() {
  std::lock_guard lock(impl_->mutex);
  const detail::ForkQuiet quiet;  // no fork in the middle of an SQLite call
  impl_->ensure_connected();
  sqlite3_stmt* s = impl_->st.count;
  if (const auto cut = Impl::cutoff(options())) sqlite3_bind_int64(s, 1, *cut);
  const int rc = sqlite3_step(s);
  const auto n = rc == SQLITE_ROW ? static_cast<std::size_t>(sqlite3_column_int64(s, 0)) : 0;
  sqlite3_reset(s);
  sqlite3_clear_bindings(s);
  impl_->check(rc, "cannot count the records");
  return n;
}

std::size_t SqliteStore::cleanup_expired() {
  const auto cut = Impl::cutoff(options());
  if (!cut) return 0;
  std::lock_guard lock(impl_->mutex);
  const detail::ForkQuiet quiet;  // no fork in the middle of an SQLite call
  impl_->ensure_connected();
  sqlite3_bind_int64(impl_->st.cleanup, 1, *cut);
  impl_->run(impl_->st.cleanup, "cannot remove expired records");
  return static_cast<std::size_t>(sqlite3_changes(impl_->db));
}

Record SqliteStore::wait_terminal(std::string_view key, clock::time_point deadline) {
  validate_key(key);
  auto seen = impl_->notifier->generation();  // before the first look: no write is missed
  auto backoff = std::chrono::milliseconds(1);
  for (;;) {
    // The data version before the look: a commit by another process after it changes the version.
    std::int64_t data_version = 0;
    {
      std::lock_guard lock(impl_->mutex);
      const detail::ForkQuiet quiet;  // no fork in the middle of an SQLite call
      impl_->ensure_connected();
      data_version = impl_->data_version();
    }
    Record r = get(key);
    if (is_terminal(r.status)) return r;
    if (clock::now() >= deadline) return r;
    for (;;) {
      const auto until = std::min(deadline, clock::now() + backoff);
      if (impl_->notifier->wait_for_change(seen, until)) {
        seen = impl_->notifier->generation();
        backoff = std::chrono::milliseconds(1);
        break;  // a write in this process
      }
      if (clock::now() >= deadline) break;
      std::lock_guard lock(impl_->mutex);
      const detail::ForkQuiet quiet;  // no fork in the middle of an SQLite call
      impl_->ensure_connected();
      if (impl_->data_version() != data_version) {
        backoff = std::chrono::milliseconds(1);
        break;  // a write by another connection
      }
      backoff = std::min(backoff * 2, std::chrono::milliseconds(50));
    }
  }
}

Record::time_point SqliteStore::now() {
  return from_unix_ms(impl_->locked([&] { return impl_->now_ms(); }));
}

std::vector<std::string> SqliteStore::enqueue_many(std::span<const JobRequest> requests) {
  // Every request is checked before anything is written; the times come from SQLite's clock inside
  // the transaction.
  std::vector<Record> records;
  records.reserve(requests.size());
  for (const JobRequest& request : requests) {
    records.push_back(detail::new_job_record(detail::job_id(*this, request), request, {}));
  }
  std::vector<std::string> ids;
  ids.reserve(records.size());
  if (records.empty()) return ids;
  impl_->locked([&] {
    impl_->transaction([&] {
      const auto now = from_unix_ms(impl_->now_ms());
      std::string bytes;
      for (std::size_t i = 0; i < records.size(); ++i) {
        Record& r = records[i];
        const JobOptions& o = requests[i].options;
        r.created = now;
        r.job->run_at = o.start_at ? *o.start_at : now + o.delay;
        bytes = detail::encode_record(r, format());
        sqlite3_stmt* s = impl_->st.insert_job;
        sqlite3_bind_text(s, 1, r.key.data(), static_cast<int>(r.key.size()), SQLITE_STATIC);
        sqlite3_bind_blob(s, 2, bytes.data(), static_cast<int>(bytes.size()), SQLITE_STATIC);
        sqlite3_bind_int64(s, 3, detail::to_unix_ms(now));
        sqlite3_bind_text(s, 4, r.job->queue.data(), static_cast<int>(r.job->queue.size()),
                          SQLITE_STATIC);
        sqlite3_bind_int64(s, 5, r.job->priority);
        sqlite3_bind_int64(s, 6, detail::to_unix_ms(r.job->run_at));
        impl_->run(s, "cannot enqueue a job");
      }
      return 0;
    });
  });
  for (Record& r : records) {
    impl_->notifier->notify(r.key);
    ids.push_back(std::move(r.key));
  }
  return ids;
}

std::vector<Lease> SqliteStore::claim(std::span<const std::string> queues, std::string_view worker,
                                      std::chrono::milliseconds lease, std::size_t max) {
  std::vector<Lease> leases;
  std::vector<std::string> failed;  // corrupt jobs written FAILED
  if (max == 0 || queues.empty()) return leases;
  impl_->locked([&] {
    impl_->transaction([&] {
      const std::int64_t now_ms = impl_->now_ms();
      const auto now = from_unix_ms(now_ms);
      // Rounds: a corrupt job takes a place among the candidates but gives no lease, so look again
      // while it made the claim come up short.
      for (bool again = true; again && leases.size() < max;) {
        again = false;
        const std::size_t want = max - leases.size();
        std::vector<Candidate> found;
        for (std::size_t q = 0; q < queues.size(); ++q) {
          if (std::find(queues.begin(), queues.begin() + static_cast<std::ptrdiff_t>(q),
                        queues[q]) != queues.begin() + static_cast<std::ptrdiff_t>(q)) {
            continue;  // a queue named twice
          }
          impl_->candidates(impl_->st.claim_queued, queues[q], now_ms, want, found);
          impl_->candidates(impl_->st.claim_expired, queues[q], now_ms, want, found);
        }
        // The claim order of detail::claims_before, on the columns.
        std::sort(found.begin(), found.end(), [](const Candidate& a, const Candidate& b) {
          if (a.priority != b.priority) return a.priority > b.priority;
          if (a.run_at != b.run_at) return a.run_at < b.run_at;
          return a.key < b.key;
        });
        if (found.size() > want) found.resize(want);
        for (const Candidate& c : found) {
          std::optional<Record> r =
              impl_->load_job(c.key, format(), [](std::string_view, std::int64_t) { return true; });
          if (!r) continue;
          if (!r->job) {
            // The row says job, the blob does not decode (or holds no job): FAILED with the
            // reason, out of the queue for good.
            if (!r->error) {
              r->error = ErrorInfo{"strand::DecodeError", "strand: the record of key \"" + c.key +
                                                              "\" in " + impl_->path.string() +
                                                              " is queued as a job but holds none"};
            }
            r->status = Status::failed;
            r->completed = now;
            impl_->write(*r, format());
            failed.push_back(c.key);
            again = true;
            continue;
          }
          detail::claim_job(*r, worker, now, lease);
          impl_->write(*r, format());
          const std::uint64_t token = r->job->token;
          const auto expires = *r->job->lease_expires;
          leases.push_back(
              {.id = c.key, .token = token, .record = std::move(*r), .expires = expires});
        }
      }
      return 0;
    });
  });
  for (const Lease& l : leases) {
    impl_->held.remember(l.record);
    impl_->notifier->notify(l.id);
  }
  for (const std::string& key : failed) impl_->notifier->notify(key);
  return leases;
}

namespace {
// The row of a job that `token` still holds.
bool running_under(std::string_view status, std::int64_t token, std::uint64_t expected) {
  return status == "running" && token == static_cast<std::int64_t>(expected);
}
}  // namespace

LeaseState SqliteStore::heartbeat(std::string_view id, std::uint64_t token,
                                  std::chrono::milliseconds lease) {
  validate_key(id);
  LeaseState state = LeaseState::lost;
  std::optional<Record> renewed;
  impl_->locked([&] {
    impl_->transaction([&] {
      // The columns tell cancelled and lost apart; only a held lease is decoded and written.
      const auto r = impl_->load_job(id, format(), [&](std::string_view status, std::int64_t t) {
        if (t != static_cast<std::int64_t>(token)) return false;
        if (status == "cancelled") state = LeaseState::cancelled;
        return status == "running";
      });
      if (!r) return 0;
      Record next = std::move(*r);
      state = detail::heartbeat_job(next, token, from_unix_ms(impl_->now_ms()), lease);
      if (state == LeaseState::held) {
        impl_->write(next, format());
        renewed = std::move(next);
      }
      return 0;
    });
  });
  // Outside the lock: HeldJobs takes a ForkQuiet of its own.
  if (renewed) {
    impl_->held.remember(*renewed);
  } else {
    impl_->held.forget(id);
  }
  if (state == LeaseState::held) impl_->notifier->notify(id);
  return state;
}

bool SqliteStore::complete(std::string_view id, std::uint64_t token, const nlohmann::json& value) {
  return impl_->change_job(
      id, format(),
      [&](std::string_view status, std::int64_t t) { return running_under(status, t, token); },
      [&](Record& r, Record::time_point now) { return detail::complete_job(r, token, value, now); },
      token);
}

std::vector<bool> SqliteStore::complete_many(std::span<const Completion> completions) {
  // Jobs this object claimed are changed from the records their claims wrote, encoded outside the
  // lock and written in one transaction, each a compare-and-set on its version. The rest (not held
  // here, or changed meanwhile) go through complete() one by one.
  std::vector<bool> recorded(completions.size(), false);
  std::vector<std::size_t> alone;  // indexes for complete()
  struct Held {
    std::size_t index;
    Record record;
    std::uint64_t version;
    std::string bytes;
  };
  std::vector<Held> held;
  for (std::size_t i = 0; i < completions.size(); ++i) {
    validate_key(completions[i].id);
    if (std::optional<Record> r = impl_->held.recall(completions[i].id, completions[i].token)) {
      const std::uint64_t version = r->version;
      held.push_back({i, std::move(*r), version, {}});
    } else {
      alone.push_back(i);
    }
  }
  if (!held.empty()) {
    const auto now = from_unix_ms(impl_->locked([&] { return impl_->now_ms(); }));
    std::erase_if(held, [&](Held& h) {
      const Completion& c = completions[h.index];
      if (!h.record.job || !detail::complete_job(h.record, c.token, *c.value, now)) {
        impl_->held.forget(c.id);
        return true;  // refused, as complete() would refuse it: false
      }
      h.bytes = detail::encode_record(h.record, format());
      return false;
    });
    impl_->locked([&] {
      impl_->transaction([&] {
        for (Held& h : held) {
          recorded[h.index] = impl_->write_if_version(h.record, h.bytes, h.version);
        }
        return 0;
      });
    });
    for (const Held& h : held) {
      const std::string_view id = completions[h.index].id;
      impl_->held.forget(id);
      if (recorded[h.index]) {
        impl_->notifier->notify(id);
      } else {
        alone.push_back(h.index);  // changed meanwhile: read it
      }
    }
  }
  for (const std::size_t i : alone) {
    recorded[i] = complete(completions[i].id, completions[i].token, *completions[i].value);
  }
  return recorded;
}

bool SqliteStore::fail(std::string_view id, std::uint64_t token, const ErrorInfo& error,
                       bool retryable) {
  return impl_->change_job(
      id, format(),
      [&](std::string_view status, std::int64_t t) { return running_under(status, t, token); },
      [&](Record& r, Record::time_point now) {
        return detail::fail_job(r, token, error, retryable, now);
      },
      token);
}

bool SqliteStore::release(std::string_view id, std::uint64_t token) {
  return impl_->change_job(
      id, format(),
      [&](std::string_view status, std::int64_t t) { return running_under(status, t, token); },
      [&](Record& r, Record::time_point now) { return detail::release_job(r, token, now); }, token);
}

bool SqliteStore::cancel_job(std::string_view id) {
  return impl_->change_job(
      id, format(),
      [](std::string_view status, std::int64_t token) {
        return token >= 0 && (status == "queued" || status == "running" || status == "pending");
      },
      [](Record& r, Record::time_point now) { return detail::cancel_job(r, now); });
}

void SqliteStore::wait_for_jobs(std::span<const std::string> queues,
                                JobQueue::clock::time_point deadline, std::stop_token stop) {
  detail::Notifier& notifier = *impl_->notifier;
  // Before the first look: a write of this process after it changes the generation.
  const std::uint64_t seen = notifier.generation();
  // `stop` wakes the wait below through the notifier (other waiters on this file wake too, and
  // look again: harmless).
  const std::stop_callback on_stop(stop, [&notifier] { notifier.notify(""); });
  std::int64_t data_version = 0;
  std::optional<std::int64_t> due;
  std::int64_t now_ms = 0;
  impl_->locked([&] {
    data_version = impl_->data_version();  // before the look, like `seen`
    now_ms = impl_->now_ms();
    for (const std::string& queue : queues) {
      for (sqlite3_stmt* s : {impl_->st.next_run_at, impl_->st.next_lease}) {
        if (const auto at = impl_->next(s, queue); at && (!due || *at < *due)) due = at;
      }
    }
  });
  auto until = deadline;
  if (due) {
    if (*due <= now_ms) return;  // claimable now (an expired lease is claimable after it)
    // Capped at a day: a job due later is looked at again then.
    const auto left =
        std::chrono::milliseconds(std::min<std::int64_t>(*due - now_ms + 1, 86'400'000));
    until = std::min(until, JobQueue::clock::now() + left);
  }
  auto backoff = std::chrono::milliseconds(1);
  while (!stop.stop_requested()) {
    const auto t = JobQueue::clock::now();
    if (t >= until) return;
    if (notifier.wait_for_change(seen, std::min(until, t + backoff))) return;  // this process
    if (stop.stop_requested()) return;
    const bool changed =
        impl_->locked([&] { return impl_->data_version() != data_version; });  // another process
    if (changed) return;
    backoff = std::min(backoff * 2, std::chrono::milliseconds(50));
  }
}

}  // namespace strand
