// SqliteStore: its schema and mode, and the bad inputs (a file that is not a database, another
// schema version, bad keys, a corrupt record, several processes at once); its job queue's own parts
// (the job queue's contract is tested in job_queue_test.cpp): the migration of a version-1 file,
// the claim index, a corrupt job, processes claiming from one file, and SQLite's clock.
#include "strand/sqlite_store.hpp"

#include <sqlite3.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "store_support.hpp"

namespace {

using namespace std::chrono_literals;
using strand::Format;
using strand::Record;
using strand::SqliteStore;
using strand::Status;
using strand::testing::TempDir;

// A raw connection, to look at or damage the file behind the store's back.
class Raw {
 public:
  explicit Raw(const std::filesystem::path& path) {
    if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK) throw std::runtime_error("open");
    sqlite3_busy_timeout(db_, 5000);
  }
  ~Raw() { sqlite3_close(db_); }
  Raw(const Raw&) = delete;
  Raw& operator=(const Raw&) = delete;
  void exec(const std::string& sql) {
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
      throw std::runtime_error(sqlite3_errmsg(db_));
    }
  }
  std::string text(const std::string& sql) {
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr);
    std::string out;
    if (sqlite3_step(s) == SQLITE_ROW)
      out = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return out;
  }
  // Column `column` of every row, joined by "; ".
  std::string joined(const std::string& sql, int column) {
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr);
    std::string out;
    while (sqlite3_step(s) == SQLITE_ROW) {
      if (!out.empty()) out += "; ";
      out += reinterpret_cast<const char*>(sqlite3_column_text(s, column));
    }
    sqlite3_finalize(s);
    return out;
  }

 private:
  sqlite3* db_ = nullptr;
};

std::string open_error(const std::filesystem::path& path) {
  try {
    (void)SqliteStore::open(path);
  } catch (const strand::StoreError& e) {
    return e.what();
  }
  return "no error";
}

TEST(SqliteStore, RunsInWalModeWithAVersionedSchema) {
  TempDir tmp;
  auto store = SqliteStore::open(tmp.path() / "s.db");
  EXPECT_EQ(store->path(), tmp.path() / "s.db");
  store->set({.key = "k", .status = Status::running, .created = Record::time_point(1234ms)});
  Raw raw(tmp.path() / "s.db");
  EXPECT_EQ(raw.text("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(raw.text("PRAGMA user_version"), "2");
  EXPECT_EQ(raw.text("SELECT status || ' ' || created_ms || ' ' || version FROM strand_records"),
            "running 1234 1");
}

TEST(SqliteStore, AFileThatIsNotADatabaseIsAStoreErrorNamingIt) {
  TempDir tmp;
  const auto path = tmp.path() / "notes.db";
  std::ofstream(path) << std::string(4096, 'x') << "this is not an SQLite database\n";
  EXPECT_EQ(open_error(path), "strand: cannot open the SQLite store \"" + path.string() +
                                  "\": cannot read the schema version: file is not a database");
}

TEST(SqliteStore, ADatabaseOfAnotherSchemaVersionIsAStoreErrorSayingWhich) {
  TempDir tmp;
  const auto path = tmp.path() / "future.db";
  Raw(path).exec("CREATE TABLE t (x); PRAGMA user_version = 7;");
  EXPECT_EQ(open_error(path),
            "strand: cannot open the SQLite store \"" + path.string() +
                "\": it has schema version 7: this strand reads schema version 2");
}

TEST(SqliteStore, AFileThatCannotBeCreatedIsAStoreError) {
  TempDir tmp;
  std::ofstream(tmp.path() / "plain-file") << "x";
  const auto path = tmp.path() / "plain-file" / "s.db";
  EXPECT_EQ(open_error(path), "strand: cannot open the SQLite store \"" + path.string() +
                                  "\": cannot open: unable to open database file");
}

TEST(SqliteStore, BadKeysAreRefusedAndNothingIsWritten) {
  TempDir tmp;
  auto store = SqliteStore::open(tmp.path() / "s.db");
  const std::pair<std::string, std::string> cases[] = {
      {"a/b", R"(strand: invalid store key "a/b": it contains a path separator)"},
      {"..", R"(strand: invalid store key "..": it names a directory)"},
      {std::string("a\0b", 3), R"(strand: invalid store key "a\x00b": it contains a NUL byte)"},
  };
  for (const auto& [key, message] : cases) {
    try {
      store->set({.key = key});
      ADD_FAILURE() << "expected InvalidKey";
    } catch (const strand::InvalidKey& e) {
      EXPECT_EQ(e.what(), message);
    }
  }
  EXPECT_EQ(store->size(), 0u);
  EXPECT_EQ(Raw(tmp.path() / "s.db").text("SELECT count(*) FROM strand_records"), "0");
}

TEST(SqliteStore, ACorruptRecordReadsAsFailedAndOtherKeysStillWork) {
  TempDir tmp;
  const auto path = tmp.path() / "s.db";
  auto store = SqliteStore::open(path, {.format = Format::msgpack});
  store->set({.key = "good", .status = Status::completed, .value = 1});
  store->set({.key = "bad", .status = Status::completed, .value = 2});
  store->set({.key = "cut", .status = Status::completed, .value = std::string(100, 'x')});
  {
    Raw raw(path);
    raw.exec("UPDATE strand_records SET record = X'01FF02' WHERE key = 'bad'");
    raw.exec("UPDATE strand_records SET record = substr(record, 1, 20) WHERE key = 'cut'");
  }
  for (const char* key : {"bad", "cut"}) {
    const Record r = store->get(key);
    EXPECT_EQ(r.status, Status::failed);
    ASSERT_TRUE(r.error.has_value());
    EXPECT_EQ(r.error->type, "strand::DecodeError");
    const std::string prefix = "strand: the record of key \"" + std::string(key) + "\" in " +
                               path.string() + " does not decode: ";
    EXPECT_EQ(r.error->message.substr(0, prefix.size()), prefix) << r.error->message;
  }
  EXPECT_EQ(store->get("good").value, 1);
  EXPECT_EQ(store->keys(), (std::vector<std::string>{"bad", "cut", "good"}));
  store->set({.key = "bad", .status = Status::completed, .value = 3});
  EXPECT_EQ(store->get("bad").value, 3);
}

TEST(SqliteStore, TwoProcessesWritingAtOnceLoseNoWrite) {
  TempDir tmp;
  auto store = SqliteStore::open(tmp.path() / "s.db");
  constexpr int kWrites = 200;
  const int ok = strand::testing::run_children(2, [&](int child) {
    // The inherited store object: it opens its own connection in the child.
    for (int i = 0; i < kWrites; ++i) {
      store->update("counter", [](std::optional<Record> r) {
        if (!r) r = Record{.metadata = {{"count", 0}}};
        r->metadata["count"] = r->metadata["count"].get<int>() + 1;
        return r;
      });
      store->set({.key = "c" + std::to_string(child) + "-" + std::to_string(i)});
    }
    return true;
  });
  ASSERT_EQ(ok, 2);
  EXPECT_EQ(store->get("counter").metadata["count"], 2 * kWrites);
  EXPECT_EQ(store->get("counter").version, std::uint64_t{2 * kWrites});
  EXPECT_EQ(store->size(), std::size_t{2 * kWrites + 1});
}

TEST(SqliteStore, WaitTerminalWakesForAnotherProcesssWrite) {
  TempDir tmp;
  auto store = SqliteStore::open(tmp.path() / "s.db");
  store->set({.key = "job", .status = Status::running});
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  const pid_t pid = ::fork();
  if (pid == 0) {
    char c;
    (void)!::read(go[0], &c, 1);
    auto other = SqliteStore::open(tmp.path() / "s.db");
    other->set({.key = "job", .status = Status::completed, .value = "from the child"});
    ::_exit(0);
  }
  const auto start = std::chrono::steady_clock::now();
  (void)!::write(go[1], "x", 1);
  const Record r = store->wait_terminal("job", start + 5s);
  const auto waited = std::chrono::steady_clock::now() - start;
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(go[0]);
  ::close(go[1]);
  EXPECT_EQ(r.status, Status::completed);
  EXPECT_EQ(r.value, "from the child");
  EXPECT_LT(waited, 2s);
}

// The job queue.

const std::vector<std::string> kDefault{"default"};

std::string unix_ms(Record::time_point t) {
  return std::to_string(
      std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count());
}

TEST(SqliteStore, AVersionOneFileIsMigratedInPlace) {
  TempDir tmp;
  const auto path = tmp.path() / "v1.db";
  const std::string old =
      nlohmann::json(Record{.key = "old", .status = Status::completed, .value = 7}).dump();
  {
    Raw raw(path);  // what SqliteStore wrote before the job queue
    raw.exec(R"sql(
      PRAGMA journal_mode = WAL;
      CREATE TABLE strand_records (
        key TEXT PRIMARY KEY, status TEXT NOT NULL, record BLOB NOT NULL,
        created_ms INTEGER NOT NULL, completed_ms INTEGER, version INTEGER NOT NULL
      ) WITHOUT ROWID;
      PRAGMA user_version = 1;)sql");
    raw.exec("INSERT INTO strand_records VALUES ('old', 'completed', CAST('" + old +
             "' AS BLOB), 1234, NULL, 3)");
  }
  auto store = SqliteStore::open(path);
  Raw raw(path);
  EXPECT_EQ(raw.text("PRAGMA user_version"), "2");
  EXPECT_EQ(raw.text("SELECT count(*) FROM sqlite_master WHERE name = 'strand_jobs_claim'"), "1");
  const Record r = store->get("old");
  EXPECT_EQ(r.value, 7);
  EXPECT_EQ(r.version, 3u);
  EXPECT_EQ(raw.text("SELECT coalesce(queue, 'none') FROM strand_records WHERE key = 'old'"),
            "none");
  const std::string id = store->enqueue({.function = "f"});
  const auto leases = store->claim(kDefault, "w1", 30s, 4);
  ASSERT_EQ(leases.size(), 1u);
  EXPECT_EQ(leases[0].id, id);
  // Opened again: already version 2, nothing to migrate.
  EXPECT_EQ(SqliteStore::open(path)->get("old").value, 7);
}

TEST(SqliteStore, TheJobColumnsFollowTheRecordAndClaimWalksTheIndex) {
  TempDir tmp;
  const auto path = tmp.path() / "s.db";
  auto store = SqliteStore::open(path);
  const std::string id =
      store->enqueue({.function = "f", .options = {.queue = "q", .priority = 4}});
  Raw raw(path);
  const auto columns = [&] {
    return raw.text(
        "SELECT status || ' ' || coalesce(queue, '-') || ' ' || priority || ' ' || token || ' ' || "
        "coalesce(lease_ms, '-') FROM strand_records WHERE key = '" +
        id + "'");
  };
  EXPECT_EQ(columns(), "queued q 4 0 -");
  const std::vector<std::string> q{"q"};
  const auto lease = store->claim(q, "w1", 30s, 1).at(0);
  EXPECT_EQ(columns(), "running q 4 1 " + unix_ms(lease.expires));
  ASSERT_EQ(store->heartbeat(id, lease.token, 60s), strand::LeaseState::held);
  // The record and its columns agree on the new lease.
  const auto expires = *store->get(id).job->lease_expires;
  EXPECT_EQ(columns(), "running q 4 1 " + unix_ms(expires));
  ASSERT_TRUE(store->complete(id, lease.token, 1));
  EXPECT_EQ(columns(), "completed - 4 1 -");  // out of the claim index
  // A plain set keeps the columns in step too: a record that is not a job has none.
  store->set({.key = id, .status = Status::queued});
  EXPECT_EQ(raw.text("SELECT coalesce(queue, 'NULL') || coalesce(token, 'NULL') FROM "
                     "strand_records WHERE key = '" +
                     id + "'"),
            "NULLNULL");
  // Claim is a walk of the index in its order: no table scan, no sort.
  const std::string plan = raw.joined(
      "EXPLAIN QUERY PLAN SELECT key, priority, run_at_ms FROM strand_records "
      "WHERE queue = ?1 AND status = 'queued' AND run_at_ms <= ?2 "
      "ORDER BY priority DESC, run_at_ms, key LIMIT ?3",
      3);
  EXPECT_NE(plan.find("INDEX strand_jobs_claim (queue=? AND status=?)"), std::string::npos) << plan;
  EXPECT_EQ(plan.find("TEMP B-TREE"), std::string::npos) << plan;
}

TEST(SqliteStore, ACorruptJobFailsWithTheReasonAndTheNextJobIsClaimed) {
  TempDir tmp;
  const auto path = tmp.path() / "s.db";
  auto store = SqliteStore::open(path);
  const std::string bad = store->enqueue({.function = "f", .options = {.priority = 9}});
  const std::string good = store->enqueue({.function = "f"});
  Raw(path).exec("UPDATE strand_records SET record = X'01FF02' WHERE key = '" + bad + "'");
  const auto leases = store->claim(kDefault, "w1", 30s, 1);
  ASSERT_EQ(leases.size(), 1u);
  EXPECT_EQ(leases[0].id, good);
  const Record r = store->get(bad);
  EXPECT_EQ(r.status, Status::failed);
  ASSERT_TRUE(r.error);
  EXPECT_EQ(r.error->type, "strand::DecodeError");
  const std::string prefix =
      "strand: the record of key \"" + bad + "\" in " + path.string() + " does not decode: ";
  EXPECT_EQ(r.error->message.substr(0, prefix.size()), prefix) << r.error->message;
  EXPECT_TRUE(store->claim(kDefault, "w1", 30s, 4).empty());  // never claimed again
  EXPECT_TRUE(store->complete(good, leases[0].token, 1));
}

TEST(SqliteStore, TwoProcessesClaimEveryJobOnce) {
  TempDir tmp;
  const auto path = tmp.path() / "s.db";
  auto store = SqliteStore::open(path);
  constexpr int kJobs = 300;
  const auto ids = store->enqueue_many(
      std::vector<strand::JobRequest>(kJobs, strand::JobRequest{.function = "f"}));
  const int ok = strand::testing::run_children(2, [&](int child) {
    for (;;) {  // the inherited store object opens its own connection in the child
      const auto leases = store->claim(kDefault, "child-" + std::to_string(child), 30s, 8);
      if (leases.empty()) return true;
      for (const auto& lease : leases) {
        if (!store->complete(lease.id, lease.token, child)) return false;
      }
    }
  });
  ASSERT_EQ(ok, 2);
  std::map<std::string, int> by_worker;
  for (const auto& id : ids) {
    const Record r = store->get(id);
    EXPECT_EQ(r.status, Status::completed) << id;
    ASSERT_TRUE(r.job);
    EXPECT_EQ(r.job->token, 1u) << id;  // claimed once
    ASSERT_EQ(r.job->history.size(), 1u) << id;
    ++by_worker[r.job->worker];
  }
  EXPECT_EQ(by_worker["child-0"] + by_worker["child-1"], kJobs);
}

TEST(SqliteStore, WaitForJobsWakesForAnotherProcesssEnqueue) {
  TempDir tmp;
  auto store = SqliteStore::open(tmp.path() / "s.db");
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  const pid_t pid = ::fork();
  if (pid == 0) {
    char c;
    (void)!::read(go[0], &c, 1);
    SqliteStore::open(tmp.path() / "s.db")->enqueue({.function = "from the child"});
    ::_exit(0);
  }
  const auto start = std::chrono::steady_clock::now();
  (void)!::write(go[1], "x", 1);
  std::vector<strand::Lease> leases;
  while (leases.empty() && std::chrono::steady_clock::now() < start + 5s) {
    store->wait_for_jobs(kDefault, start + 5s, {});
    leases = store->claim(kDefault, "w1", 30s, 1);
  }
  const auto waited = std::chrono::steady_clock::now() - start;
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(go[0]);
  ::close(go[1]);
  ASSERT_EQ(leases.size(), 1u);
  EXPECT_EQ(leases[0].record.job->function, "from the child");
  EXPECT_LT(waited, 2s);
}

// A VFS like the default one whose clock runs an hour ahead: SQLite's clock, not the system's.
constexpr std::int64_t kAheadMs = 3'600'000;
sqlite3_vfs* base_vfs = nullptr;
int ahead_time(sqlite3_vfs*, sqlite3_int64* out) {
  const int rc = base_vfs->xCurrentTimeInt64(base_vfs, out);
  *out += kAheadMs;
  return rc;
}

TEST(SqliteStore, TheJobQueueRunsOnSqlitesClock) {
  base_vfs = sqlite3_vfs_find(nullptr);
  ASSERT_NE(base_vfs, nullptr);
  ASSERT_GE(base_vfs->iVersion, 2);
  static sqlite3_vfs ahead = *base_vfs;
  ahead.zName = "strand-test-ahead";
  ahead.xCurrentTimeInt64 = ahead_time;
  ASSERT_EQ(sqlite3_vfs_register(&ahead, /*makeDflt=*/1), SQLITE_OK);
  {
    TempDir tmp;
    auto store = SqliteStore::open(tmp.path() / "s.db");
    const auto system = std::chrono::system_clock::now();
    const auto now = store->now();
    EXPECT_GT(now - system, std::chrono::milliseconds(kAheadMs) - 5s);
    EXPECT_LT(now - system, std::chrono::milliseconds(kAheadMs) + 5s);
    // Due in 10 minutes by the system's clock, 50 minutes late by SQLite's: claimable now.
    const std::string id =
        store->enqueue({.function = "f", .options = {.start_at = system + 10min}});
    const auto lease = store->claim(kDefault, "w1", 10s, 1).at(0);
    EXPECT_EQ(lease.id, id);
    EXPECT_GE(lease.expires, now + 10s);
    EXPECT_LT(lease.expires, now + 20s);
    // A delay counts from SQLite's now too.
    const std::string later = store->enqueue({.function = "f", .options = {.delay = 1s}});
    EXPECT_GE(store->get(later).job->run_at, now + 1s);
    EXPECT_TRUE(store->claim(kDefault, "w1", 10s, 1).empty());
  }
  sqlite3_vfs_unregister(&ahead);
  ASSERT_EQ(sqlite3_vfs_register(base_vfs, /*makeDflt=*/1), SQLITE_OK);
}

}  // namespace
