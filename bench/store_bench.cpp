// bench/store_bench.cpp — strand's stores against the least their medium can do, in one binary.
//
// Per store (MemoryStore, FileSystemStore, SqliteStore): 2,000 small records set into a fresh
// store, then read back (ops/s as the per_op counter inverted), and a "computation" cycle per key:
// set running, set completed, get (what async_compute does for one computation: about two writes
// and a read). The peers, for the ratio table:
//  - filesystem: write a file to a temporary name and rename() it into place (open, write, close,
//    rename: the least an atomic file write can do), and read a file (open, read, close);
//  - SQLite: the raw single-row WAL transaction rate through the plain sqlite3 API in this binary,
//    with the same pragmas as the store (journal_mode=WAL, synchronous=NORMAL): an autocommitted
//    INSERT OR REPLACE of a key and a blob of the same size as the store's record, and a SELECT.
//
// File operations per call of FileSystemStore (counted with `strace -c -f` on this benchmark's
// filesystem cases, see the README's Stores section): set = openat(lock) + flock + openat(record)
// + read + close (the previous record, for its version) + openat(tmp, O_CREAT) + write + close +
// rename + close(lock): 10 system calls, one of which creates a file; a first set (no previous
// record) is 8. get = openat + read + close: 3. No fsync unless StoreOptions::durable.
#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "ratio_table.hpp"
#include "strand/filesystem_store.hpp"
#include "strand/memory_store.hpp"
#include "strand/sqlite_store.hpp"
#include "strand/store.hpp"

namespace {

constexpr int kRecords = 2000;

// A fresh directory under /tmp (the same disk as the project here), removed at scope exit.
class Scratch {
 public:
  Scratch() {
    std::string pattern = "/tmp/strand-store-bench-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) std::abort();
    path_ = pattern;
  }
  ~Scratch() { std::filesystem::remove_all(path_); }
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

std::vector<std::string> make_keys() {
  std::vector<std::string> keys;
  for (int i = 0; i < kRecords; ++i) keys.push_back("key-" + std::to_string(i));
  return keys;
}

strand::Record small_record(const std::string& key, strand::Status status) {
  strand::Record r;
  r.key = key;
  r.status = status;
  r.value = 42;
  return r;
}

void per_op(benchmark::State& state, int ops) {
  state.counters["per_op"] = benchmark::Counter(
      ops, benchmark::Counter::Flags(benchmark::Counter::kIsIterationInvariantRate |
                                     benchmark::Counter::kInvert));
  state.counters["ops_per_s"] =
      benchmark::Counter(ops, benchmark::Counter::kIsIterationInvariantRate);
}

enum class Kind { memory, filesystem, sqlite };

std::shared_ptr<strand::Store> open(Kind kind, const Scratch& scratch, int round) {
  switch (kind) {
    case Kind::memory:
      return strand::MemoryStore::open();
    case Kind::filesystem:
      return strand::FileSystemStore::open(scratch.path() / ("fs" + std::to_string(round)));
    case Kind::sqlite:
      return strand::SqliteStore::open(scratch.path() / ("db" + std::to_string(round) + ".db"));
  }
  std::abort();
}

template <Kind kind>
void store_set(benchmark::State& state) {
  Scratch scratch;
  const auto keys = make_keys();
  int round = 0;
  for (auto _ : state) {
    state.PauseTiming();
    auto store = open(kind, scratch, ++round);
    state.ResumeTiming();
    for (const auto& key : keys) store->set(small_record(key, strand::Status::completed));
  }
  per_op(state, kRecords);
}

template <Kind kind>
void store_get(benchmark::State& state) {
  Scratch scratch;
  const auto keys = make_keys();
  auto store = open(kind, scratch, 0);
  for (const auto& key : keys) store->set(small_record(key, strand::Status::completed));
  for (auto _ : state) {
    for (const auto& key : keys) {
      if (store->get(key).status != strand::Status::completed) std::abort();
    }
  }
  per_op(state, kRecords);
}

// One computation's store traffic: two writes (running, completed) and one read.
template <Kind kind>
void store_cycle(benchmark::State& state) {
  Scratch scratch;
  const auto keys = make_keys();
  int round = 0;
  for (auto _ : state) {
    state.PauseTiming();
    auto store = open(kind, scratch, ++round);
    state.ResumeTiming();
    for (const auto& key : keys) {
      store->set(small_record(key, strand::Status::running));
      store->set(small_record(key, strand::Status::completed));
      if (store->get(key).status != strand::Status::completed) std::abort();
    }
  }
  per_op(state, kRecords);
}

// The filesystem peer: an atomic file write (temporary file + rename) and a plain read.
const std::string kPayload = strand::detail::encode_json(
    nlohmann::json(small_record("key-1000", strand::Status::completed)), strand::Format::json);

void raw_file_write(benchmark::State& state) {
  Scratch scratch;
  const auto keys = make_keys();
  int round = 0;
  for (auto _ : state) {
    state.PauseTiming();
    const auto dir = scratch.path() / ("raw" + std::to_string(++round));
    std::filesystem::create_directory(dir);
    const int dirfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
    state.ResumeTiming();
    for (const auto& key : keys) {
      const std::string name = key + ".json";
      const std::string temp = name + ".tmp";
      const int fd = ::openat(dirfd, temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd < 0 || ::write(fd, kPayload.data(), kPayload.size()) < 0) std::abort();
      ::close(fd);
      if (::renameat(dirfd, temp.c_str(), dirfd, name.c_str()) != 0) std::abort();
    }
    ::close(dirfd);
  }
  per_op(state, kRecords);
}

void raw_file_read(benchmark::State& state) {
  Scratch scratch;
  const auto keys = make_keys();
  const int dirfd = ::open(scratch.path().c_str(), O_RDONLY | O_DIRECTORY);
  for (const auto& key : keys) {
    const int fd = ::openat(dirfd, (key + ".json").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ::write(fd, kPayload.data(), kPayload.size()) < 0) std::abort();
    ::close(fd);
  }
  char buf[16384];
  for (auto _ : state) {
    for (const auto& key : keys) {
      const int fd = ::openat(dirfd, (key + ".json").c_str(), O_RDONLY);
      if (fd < 0 || ::read(fd, buf, sizeof buf) <= 0) std::abort();
      ::close(fd);
    }
  }
  ::close(dirfd);
  per_op(state, kRecords);
}

// The SQLite peer: the same pragmas as SqliteStore, a table of key and blob, one statement per
// autocommitted transaction.
struct RawDb {
  sqlite3* db = nullptr;
  sqlite3_stmt* insert = nullptr;
  sqlite3_stmt* select = nullptr;
  explicit RawDb(const std::filesystem::path& path) {
    if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) std::abort();
    sqlite3_exec(db,
                 "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                 "CREATE TABLE IF NOT EXISTS t (key TEXT PRIMARY KEY, record BLOB) WITHOUT ROWID",
                 nullptr, nullptr, nullptr);
    sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO t (key, record) VALUES (?1, ?2)", -1, &insert,
                       nullptr);
    sqlite3_prepare_v2(db, "SELECT record FROM t WHERE key = ?1", -1, &select, nullptr);
  }
  ~RawDb() {
    sqlite3_finalize(insert);
    sqlite3_finalize(select);
    sqlite3_close(db);
  }
  void put(const std::string& key) {
    sqlite3_bind_text(insert, 1, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
    sqlite3_bind_blob(insert, 2, kPayload.data(), static_cast<int>(kPayload.size()), SQLITE_STATIC);
    if (sqlite3_step(insert) != SQLITE_DONE) std::abort();
    sqlite3_reset(insert);
  }
  void get(const std::string& key) {
    sqlite3_bind_text(select, 1, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
    if (sqlite3_step(select) != SQLITE_ROW || sqlite3_column_bytes(select, 0) == 0) std::abort();
    sqlite3_reset(select);
  }
};

void raw_sqlite_insert(benchmark::State& state) {
  Scratch scratch;
  const auto keys = make_keys();
  int round = 0;
  for (auto _ : state) {
    state.PauseTiming();
    auto db = std::make_unique<RawDb>(scratch.path() / ("raw" + std::to_string(++round) + ".db"));
    state.ResumeTiming();
    for (const auto& key : keys) db->put(key);
    state.PauseTiming();
    db.reset();
    state.ResumeTiming();
  }
  per_op(state, kRecords);
}

void raw_sqlite_select(benchmark::State& state) {
  Scratch scratch;
  const auto keys = make_keys();
  RawDb db(scratch.path() / "raw.db");
  for (const auto& key : keys) db.put(key);
  for (auto _ : state) {
    for (const auto& key : keys) db.get(key);
  }
  per_op(state, kRecords);
}

constexpr const char* kMemSet = "set2000/MemoryStore";
constexpr const char* kMemGet = "get2000/MemoryStore";
constexpr const char* kMemCycle = "cycle2000/MemoryStore";
constexpr const char* kFsSet = "set2000/FileSystemStore";
constexpr const char* kFsGet = "get2000/FileSystemStore";
constexpr const char* kFsCycle = "cycle2000/FileSystemStore";
constexpr const char* kSqlSet = "set2000/SqliteStore";
constexpr const char* kSqlGet = "get2000/SqliteStore";
constexpr const char* kSqlCycle = "cycle2000/SqliteStore";
constexpr const char* kRawWrite = "set2000/raw_tmpfile_rename";
constexpr const char* kRawRead = "get2000/raw_open_read_close";
constexpr const char* kRawInsert = "set2000/raw_sqlite_wal_insert";
constexpr const char* kRawSelect = "get2000/raw_sqlite_select";

void register_benchmarks() {
  const auto add = [](const char* name, void (*fn)(benchmark::State&), int iterations) {
    benchmark::RegisterBenchmark(name, fn)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime()
        ->Iterations(iterations);
  };
  add(kMemSet, store_set<Kind::memory>, 20);
  add(kMemGet, store_get<Kind::memory>, 20);
  add(kMemCycle, store_cycle<Kind::memory>, 20);
  add(kFsSet, store_set<Kind::filesystem>, 3);
  add(kRawWrite, raw_file_write, 3);
  add(kFsGet, store_get<Kind::filesystem>, 5);
  add(kRawRead, raw_file_read, 5);
  add(kFsCycle, store_cycle<Kind::filesystem>, 2);
  add(kSqlSet, store_set<Kind::sqlite>, 5);
  add(kRawInsert, raw_sqlite_insert, 5);
  add(kSqlGet, store_get<Kind::sqlite>, 10);
  add(kRawSelect, raw_sqlite_select, 10);
  add(kSqlCycle, store_cycle<Kind::sqlite>, 3);
}

constexpr strand::bench::Ratio kRows[] = {
    {"FileSystemStore set / tmpfile+rename", kFsSet, kRawWrite, "", 0, false, "per_op", 1e6},
    {"FileSystemStore get / open+read+close", kFsGet, kRawRead, "", 0, false, "per_op", 1e6},
    {"SqliteStore set / raw WAL insert", kSqlSet, kRawInsert, "", 0, false, "per_op", 1e6},
    {"SqliteStore get / raw select", kSqlGet, kRawSelect, "", 0, false, "per_op", 1e6},
    // A computation's store traffic (2 writes + 1 read) against the end-to-end targets: the time
    // per cycle must stay well under 1/target (FS 641 us, SQLite 100 us, memory 5 us).
    {"FS cycle (2 sets + get) / FS set", kFsCycle, kFsSet, "", 0, false, "per_op", 1e6},
    {"SQLite cycle (2 sets + get) / SQLite set", kSqlCycle, kSqlSet, "", 0, false, "per_op", 1e6},
    {"Memory cycle (2 sets + get) / Memory set", kMemCycle, kMemSet, "", 0, false, "per_op", 1e6},
};

}  // namespace

int main(int argc, char** argv) {
  return strand::bench::run(argc, argv, register_benchmarks, kRows,
                            "below 1: ours is faster; microseconds per operation");
}
