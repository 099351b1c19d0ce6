#include "strand/sqlite_store.hpp"

#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <utility>

#include "../core/fork_hooks.hpp"
#include "store_detail.hpp"

namespace strand {
namespace {

// Version 1 of the schema. A later version (the job queue) adds columns and tables with ALTER TABLE
// and CREATE TABLE, and raises user_version in the same transaction.
constexpr const char* kCreateSchema = R"sql(
CREATE TABLE strand_records (
  key          TEXT PRIMARY KEY,
  status       TEXT NOT NULL,
  record       BLOB NOT NULL,
  created_ms   INTEGER NOT NULL,
  completed_ms INTEGER,
  version      INTEGER NOT NULL
) WITHOUT ROWID;
PRAGMA user_version = 1;
)sql";

// set() is one statement: the version and the created time come from the row it replaces, so no
// transaction is needed around it. The record blob is written as given; find() takes version and
// created from their columns.
constexpr const char* kUpsert = R"sql(
INSERT INTO strand_records (key, status, record, created_ms, completed_ms, version)
VALUES (?1, ?2, ?3, coalesce(?4, ?5), ?6, 1)
ON CONFLICT (key) DO UPDATE SET
  status = excluded.status, record = excluded.record,
  created_ms = coalesce(?4, strand_records.created_ms),
  completed_ms = excluded.completed_ms, version = strand_records.version + 1
RETURNING version, created_ms
)sql";

// A row's expiry in SQL: not expired <=> coalesce(completed_ms, created_ms) >= the cutoff (now -
// ttl).
constexpr const char* kFind =
    "SELECT record, version, created_ms FROM strand_records WHERE key = ?1";
constexpr const char* kErase = "DELETE FROM strand_records WHERE key = ?1";
constexpr const char* kKeys =
    "SELECT key FROM strand_records WHERE ?1 IS NULL OR coalesce(completed_ms, created_ms) >= ?1 "
    "ORDER BY key";
constexpr const char* kCount =
    "SELECT count(*) FROM strand_records WHERE ?1 IS NULL OR coalesce(completed_ms, created_ms) "
    ">= ?1";
constexpr const char* kCleanup =
    "DELETE FROM strand_records WHERE coalesce(completed_ms, created_ms) < ?1";

}  // namespace

struct SqliteStore::Impl {
  std::filesystem::path path;
  std::chrono::milliseconds busy_timeout{};
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
    sqlite3_stmt* commit = nullptr;
    sqlite3_stmt* rollback = nullptr;
    sqlite3_stmt* data_version = nullptr;
  } st;

  ~Impl() { close(); }

  void close() noexcept {
    for (sqlite3_stmt* s : {st.find, st.upsert, st.erase, st.keys, st.count, st.cleanup, st.begin,
                            st.commit, st.rollback, st.data_version}) {
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

  // Opens the connection, sets it up and checks (or creates) the schema.
  // The caller holds a ForkQuiet: no fork while SQLite's global mutexes may be held.
  void connect() {
    const int rc =
        sqlite3_open_v2(path.c_str(), &db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) fail("cannot open", db != nullptr ? sqlite3_errmsg(db) : "out of memory");
    pid = ::getpid();
    sqlite3_busy_timeout(db, static_cast<int>(busy_timeout.count()));
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
    st.commit = prepare("COMMIT");
    st.rollback = prepare("ROLLBACK");
    st.data_version = prepare("PRAGMA data_version");
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

  void write(Record& record, Format format) {
    const std::string bytes = detail::encode_record(record, format);
    const std::string_view status = to_string(record.status);
    sqlite3_stmt* s = st.upsert;
    sqlite3_bind_text(s, 1, record.key.data(), static_cast<int>(record.key.size()), SQLITE_STATIC);
    sqlite3_bind_text(s, 2, status.data(), static_cast<int>(status.size()), SQLITE_STATIC);
    sqlite3_bind_blob(s, 3, bytes.data(), static_cast<int>(bytes.size()), SQLITE_STATIC);
    if (record.created != Record::time_point{}) {
      sqlite3_bind_int64(s, 4, detail::to_unix_ms(record.created));
    }
    sqlite3_bind_int64(s, 5, detail::to_unix_ms(std::chrono::system_clock::now()));
    if (record.completed) sqlite3_bind_int64(s, 6, detail::to_unix_ms(*record.completed));
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

}  // namespace strand
