// bench/job_queue_bench.cpp — the job queue end to end, against the least SQLite can do, in one
// binary.
//
// The round trip, per store: 2,000 jobs enqueued by enqueue_many in batches of 100 while 2 worker
// threads claim in batches of 16 and complete each job (what strand::Worker does), then every
// result read back (get, checked completed). Reported as jobs per second, from the first enqueue
// to the last result read. The workers share one store object (one connection, as the threads of
// one Worker do); "2 connections" gives each worker its own SqliteStore on the file, as two worker
// processes would have.
//
// The peer: the raw single-row transaction rate of SQLite through the plain sqlite3 API in this
// binary, with the store's pragmas (journal_mode=WAL, synchronous=NORMAL): an autocommitted INSERT
// of a key and a blob of a job record's size. The target is >= 5,000 jobs/s on SQLite with
// synchronous=NORMAL; "durable" rows use synchronous=FULL (StoreOptions::durable) on both sides.
#include <sqlite3.h>
#include <unistd.h>

#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "ratio_table.hpp"
#include "strand/filesystem_store.hpp"
#include "strand/job_queue.hpp"
#include "strand/memory_store.hpp"
#include "strand/sqlite_store.hpp"

namespace {

using namespace std::chrono_literals;

constexpr int kJobs = 2000;
constexpr int kEnqueueBatch = 100;
constexpr std::size_t kClaimBatch = 16;
constexpr int kWorkers = 2;

// A fresh directory under /tmp, removed at scope exit.
class Scratch {
 public:
  Scratch() {
    std::string pattern = "/tmp/strand-jobq-bench-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) std::abort();
    path_ = pattern;
  }
  ~Scratch() { std::filesystem::remove_all(path_); }
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

void per_second(benchmark::State& state, int n) {
  state.counters["per_s"] = benchmark::Counter(n, benchmark::Counter::kIsIterationInvariantRate);
}

enum class Kind { memory, filesystem, sqlite, sqlite_durable };

std::shared_ptr<strand::Store> open(Kind kind, const std::filesystem::path& where) {
  switch (kind) {
    case Kind::memory:
      return strand::MemoryStore::open();
    case Kind::filesystem:
      return strand::FileSystemStore::open(where);
    case Kind::sqlite:
      return strand::SqliteStore::open(where.string() + ".db");
    case Kind::sqlite_durable:
      return strand::SqliteStore::open(where.string() + ".db", {.durable = true});
  }
  std::abort();
}

// One round trip of kJobs jobs; `connections` is 1 (the workers share the store object) or
// kWorkers (each worker opens its own, SQLite only).
template <Kind kind, int connections = 1>
void round_trip(benchmark::State& state) {
  Scratch scratch;
  const std::vector<std::string> queues{"default"};
  const std::vector<strand::JobRequest> batch(
      kEnqueueBatch, strand::JobRequest{.function = "double", .args = {21}});
  int round = 0;
  for (auto _ : state) {
    state.PauseTiming();
    const auto where = scratch.path() / ("q" + std::to_string(++round));
    const auto store = open(kind, where);
    const auto queue = strand::job_queue(store);
    std::vector<std::shared_ptr<strand::JobQueue>> worker_queues;
    for (int w = 0; w < kWorkers; ++w) {
      worker_queues.push_back(connections == 1 ? queue : strand::job_queue(open(kind, where)));
    }
    std::atomic<int> done{0};
    state.ResumeTiming();

    std::vector<std::thread> workers;
    for (int w = 0; w < kWorkers; ++w) {
      workers.emplace_back([&, w] {
        strand::JobQueue& q = *worker_queues[static_cast<std::size_t>(w)];
        const std::string name = "worker-" + std::to_string(w);
        while (done.load(std::memory_order_relaxed) < kJobs) {
          auto leases = q.claim(queues, name, 30s, kClaimBatch);
          if (leases.empty()) {
            q.wait_for_jobs(queues, strand::JobQueue::clock::now() + 5ms, {});
            continue;
          }
          for (const strand::Lease& lease : leases) {
            const int x = lease.record.job->args.at(0).get<int>();
            if (!q.complete(lease.id, lease.token, 2 * x)) std::abort();
            done.fetch_add(1, std::memory_order_relaxed);
          }
        }
      });
    }
    std::vector<std::string> ids;
    ids.reserve(kJobs);
    for (int i = 0; i < kJobs; i += kEnqueueBatch) {
      for (std::string& id : queue->enqueue_many(batch)) ids.push_back(std::move(id));
    }
    for (auto& t : workers) t.join();
    for (const std::string& id : ids) {
      const strand::Record r = store->get(id);
      if (r.status != strand::Status::completed || r.value != 42) std::abort();
    }
  }
  per_second(state, kJobs);
}

// The peer: raw single-row autocommitted INSERTs on a WAL file, the store's pragmas.
template <bool durable>
void raw_sqlite_insert(benchmark::State& state) {
  Scratch scratch;
  // About the size of a queued job's record in JSON.
  const std::string payload(420, 'x');
  int round = 0;
  for (auto _ : state) {
    state.PauseTiming();
    sqlite3* db = nullptr;
    const auto path = scratch.path() / ("raw" + std::to_string(++round) + ".db");
    if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) std::abort();
    sqlite3_exec(db,
                 durable ? "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                           "CREATE TABLE t (key TEXT PRIMARY KEY, record BLOB) WITHOUT ROWID"
                         : "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                           "CREATE TABLE t (key TEXT PRIMARY KEY, record BLOB) WITHOUT ROWID",
                 nullptr, nullptr, nullptr);
    sqlite3_stmt* insert = nullptr;
    sqlite3_prepare_v2(db, "INSERT INTO t (key, record) VALUES (?1, ?2)", -1, &insert, nullptr);
    std::vector<std::string> keys;
    for (int i = 0; i < kJobs; ++i) keys.push_back("key-" + std::to_string(i));
    state.ResumeTiming();
    for (const std::string& key : keys) {
      sqlite3_bind_text(insert, 1, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
      sqlite3_bind_blob(insert, 2, payload.data(), static_cast<int>(payload.size()), SQLITE_STATIC);
      if (sqlite3_step(insert) != SQLITE_DONE) std::abort();
      sqlite3_reset(insert);
    }
    state.PauseTiming();
    sqlite3_finalize(insert);
    sqlite3_close(db);
    state.ResumeTiming();
  }
  per_second(state, kJobs);
}

constexpr const char* kMem = "roundtrip2000/MemoryStore";
constexpr const char* kFs = "roundtrip2000/FileSystemStore";
constexpr const char* kSql = "roundtrip2000/SqliteStore";
constexpr const char* kSql2 = "roundtrip2000/SqliteStore_2_connections";
constexpr const char* kSqlFull = "roundtrip2000/SqliteStore_durable";
constexpr const char* kRaw = "insert2000/raw_sqlite_wal_normal";
constexpr const char* kRawFull = "insert2000/raw_sqlite_wal_full";

void register_benchmarks() {
  strand::bench::add(kMem, round_trip<Kind::memory>, 20);
  strand::bench::add(kFs, round_trip<Kind::filesystem>, 1);
  strand::bench::add(kSql, round_trip<Kind::sqlite>, 5);
  strand::bench::add(kSql2, round_trip<Kind::sqlite, kWorkers>, 5);
  strand::bench::add(kRaw, raw_sqlite_insert<false>, 5);
  strand::bench::add(kSqlFull, round_trip<Kind::sqlite_durable>, 1);
  strand::bench::add(kRawFull, raw_sqlite_insert<true>, 1);
}

// Rates: a ratio below 1 means fewer jobs per second than the peer does single-row transactions
// (each job takes about 1 + 1/16 + 1/100 transactions: its complete, its share of a claim and of
// an enqueue_many).
constexpr strand::bench::Ratio kRows[] = {
    {"SQLite round trip / raw WAL insert", kSql, kRaw, "", 0, false, "per_s", 1, true},
    {"SQLite 2 connections / raw WAL insert", kSql2, kRaw, "", 0, false, "per_s", 1, true},
    {"SQLite durable round trip / raw FULL insert", kSqlFull, kRawFull, "", 0, false, "per_s", 1,
     true},
    {"FileSystemStore round trip / SQLite", kFs, kSql, "", 0, false, "per_s", 1, true},
    {"MemoryStore round trip / SQLite", kMem, kSql, "", 0, false, "per_s", 1, true},
};

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  register_benchmarks();
  strand::bench::RecordingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  strand::bench::print_ratios(reporter.results(), kRows, "per second: above 1, ours does more");
  // The absolute target.
  const auto& results = reporter.results();
  for (const char* name : {kSql, kSql2}) {
    const auto it = results.find(name);
    if (it == results.end()) continue;
    const double rate = it->second.counters.count("per_s") ? it->second.counters.at("per_s") : 0;
    std::printf("%-44s %12.0f jobs/s  target >= 5000: %s\n", name, rate,
                rate >= 5000 ? "met" : "MISSED");
  }
  return 0;
}
