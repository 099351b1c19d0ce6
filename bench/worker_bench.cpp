// End to end through a durable store: jobs enqueued by name, run by two workers, results read back;
// beside the store's own raw rate (SQLite: single-row transactions on a WAL file with the same
// pragmas, synchronous=NORMAL; Redis: redis-benchmark's SET rate on the same server, over 50
// connections and over one).
//
// Each iteration enqueues kJobs "square" jobs in one transaction (StoreTaskWriter::map), lets two
// workers (each with its own connection, as two processes would have) claim and complete them,
// and reads every result back through its ComputationHandle (strand::get_results: the finished ones
// in one batch). jobs/s = kJobs / the iteration's time.
#include <benchmark/benchmark.h>
#include <sqlite3.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "../tests/redis_support.hpp"
#include "ratio_table.hpp"
#include "strand/strand.hpp"

namespace {

using namespace std::chrono_literals;

constexpr int kJobs = 2000;

std::filesystem::path fresh_dir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "strand-wbench-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) std::abort();
  return pattern;
}

strand::Registry registry() {
  strand::Registry r;
  r.add("square", [](long x) { return x * x; });
  return r;
}

// Each worker runs 4 jobs at once and claims 8 ahead (so claims go out 4 at a time): with a store a
// round trip away, threads waiting side by side and batched claims are what keep the rate up.
constexpr std::size_t kConcurrency = 4;
constexpr int kPrefetch = 8;

// kJobs through `url`'s queue with two workers.
// `open` gives each of the producer and the workers its own store object (its own connection), as
// three processes would have.
void end_to_end(benchmark::State& state,
                const std::function<std::shared_ptr<strand::Store>()>& open) {
  auto producer_store = open();
  strand::StoreTaskWriter<long> square(producer_store, "square");
  std::optional<strand::Worker> a(
      std::in_place, open(), registry(),
      strand::WorkerOptions{.concurrency = kConcurrency, .prefetch = kPrefetch});
  std::optional<strand::Worker> b(
      std::in_place, open(), registry(),
      strand::WorkerOptions{.concurrency = kConcurrency, .prefetch = kPrefetch});
  std::vector<std::tuple<long>> calls;
  for (long i = 0; i < kJobs; ++i) calls.emplace_back(i);
  for (auto _ : state) {
    long sum = 0;
    for (const long v : strand::get_results(square.map(calls), 60s)) sum += v;
    benchmark::DoNotOptimize(sum);
  }
  a.reset();
  b.reset();
  state.counters["jobs_per_s"] =
      benchmark::Counter(static_cast<double>(kJobs) * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate);
}

void BM_Sqlite_Jobs_EndToEnd(benchmark::State& state) {
  const auto dir = fresh_dir();
  const std::string url = "sqlite://" + (dir / "jobs.db").string();
  end_to_end(state, [&] { return strand::open_store(url); });
  std::filesystem::remove_all(dir);
}

void BM_Memory_Jobs_EndToEnd(benchmark::State& state) {
  // Every "memory:" store is a new one: the three share one object instead.
  const auto store = strand::open_store("memory:");
  end_to_end(state, [&] { return store; });
}

// One redis-server for the whole program, on a free loopback port, with nothing saved to disk.
strand::testing::RedisServer& redis() {
  static strand::testing::RedisServer server;
  return server;
}

// STRAND_BENCH_REDIS_PORT=N runs against a server already listening on 127.0.0.1:N instead (to
// watch it with redis-cli while the benchmark runs).
int redis_port() {
  const char* port = std::getenv("STRAND_BENCH_REDIS_PORT");
  return port != nullptr ? std::atoi(port) : redis().port();
}

void BM_Redis_Jobs_EndToEnd(benchmark::State& state) {
  const std::string url = "redis://127.0.0.1:" + std::to_string(redis_port()) + "/0";
  end_to_end(state, [&] { return strand::open_store(url); });
}

// The peer: redis-benchmark's SET on the same server; its requests/s is the counter. `clients`
// connections, no pipelining.
void redis_benchmark(benchmark::State& state, int clients) {
  const std::string command = "redis-benchmark -p " + std::to_string(redis_port()) +
                              " -q -t set -n 100000 -c " + std::to_string(clients) + " 2>&1";
  double rate = 0;
  for (auto _ : state) {
    FILE* pipe = ::popen(command.c_str(), "r");
    if (pipe == nullptr) {
      state.SkipWithError("cannot run redis-benchmark");
      return;
    }
    std::string out;
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
    ::pclose(pipe);
    // The last line reads "SET: 55096.42 requests per second, p50=0.455 msec" (earlier ones are
    // progress, separated by carriage returns).
    const auto at = out.rfind("SET: ");
    if (at == std::string::npos) {
      state.SkipWithError(("unexpected redis-benchmark output: " + out).c_str());
      return;
    }
    rate = std::strtod(out.c_str() + at + 5, nullptr);
  }
  state.counters["jobs_per_s"] = rate;
}

void BM_RedisBenchmark_Set_50Clients(benchmark::State& state) {
  redis_benchmark(state, 50);
}
void BM_RedisBenchmark_Set_1Client(benchmark::State& state) {
  redis_benchmark(state, 1);
}

// The peer: kJobs single-row INSERT transactions on a WAL file, synchronous=NORMAL.
void BM_RawSqlite_SingleRowTransactions(benchmark::State& state) {
  const auto dir = fresh_dir();
  sqlite3* db = nullptr;
  sqlite3_open((dir / "raw.db").c_str(), &db);
  sqlite3_exec(db,
               "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
               "CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)",
               nullptr, nullptr, nullptr);
  sqlite3_stmt* insert = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO t (v) VALUES (?1)", -1, &insert, nullptr);
  const std::string blob(200, 'x');
  for (auto _ : state) {
    for (int i = 0; i < kJobs; ++i) {
      sqlite3_bind_blob(insert, 1, blob.data(), static_cast<int>(blob.size()), SQLITE_STATIC);
      if (sqlite3_step(insert) != SQLITE_DONE) state.SkipWithError("insert failed");
      sqlite3_reset(insert);
    }
  }
  sqlite3_finalize(insert);
  sqlite3_close(db);
  std::filesystem::remove_all(dir);
  state.counters["jobs_per_s"] =
      benchmark::Counter(static_cast<double>(kJobs) * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate);
}

void register_benchmarks() {
  strand::bench::add("BM_Sqlite_Jobs_EndToEnd", BM_Sqlite_Jobs_EndToEnd, 3);
  strand::bench::add("BM_RawSqlite_SingleRowTransactions", BM_RawSqlite_SingleRowTransactions, 3);
  strand::bench::add("BM_Memory_Jobs_EndToEnd", BM_Memory_Jobs_EndToEnd, 3);
  strand::bench::add("BM_Redis_Jobs_EndToEnd", BM_Redis_Jobs_EndToEnd, 3);
  strand::bench::add("BM_RedisBenchmark_Set_50Clients", BM_RedisBenchmark_Set_50Clients, 1);
  strand::bench::add("BM_RedisBenchmark_Set_1Client", BM_RedisBenchmark_Set_1Client, 1);
}

// Rates: higher is better. The targets are absolute rates (>= 5,000 jobs/s on SQLite, >=
// 8,000 on Redis); the rows show how much of the store's raw request rate the whole job round trip
// keeps.
constexpr strand::bench::Ratio kRows[] = {
    {"SQLite jobs/s, 2 workers / raw single-row txn/s", "BM_Sqlite_Jobs_EndToEnd",
     "BM_RawSqlite_SingleRowTransactions", "", 0, false, "jobs_per_s", 1, true},
    {"memory jobs/s, 2 workers / raw SQLite txn/s", "BM_Memory_Jobs_EndToEnd",
     "BM_RawSqlite_SingleRowTransactions", "", 0, false, "jobs_per_s", 1, true},
    {"Redis jobs/s, 2 workers / redis-benchmark SET/s, 50 clients", "BM_Redis_Jobs_EndToEnd",
     "BM_RedisBenchmark_Set_50Clients", "", 0, false, "jobs_per_s", 1, true},
    {"Redis jobs/s, 2 workers / redis-benchmark SET/s, 1 client", "BM_Redis_Jobs_EndToEnd",
     "BM_RedisBenchmark_Set_1Client", "", 0, false, "jobs_per_s", 1, true},
};

}  // namespace

int main(int argc, char** argv) {
  return strand::bench::run(argc, argv, register_benchmarks, kRows, "jobs or transactions per s");
}
