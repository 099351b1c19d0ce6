// SqliteStore: its schema and mode, and the bad inputs (a file that is not a database, another
// schema version, bad keys, a corrupt record, several processes at once).
#include "strand/sqlite_store.hpp"

#include <sqlite3.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <string>

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
  EXPECT_EQ(raw.text("PRAGMA user_version"), "1");
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
                "\": it has schema version 7: this strand reads schema version 1");
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

}  // namespace
