// bench/compute_bench.cpp — async_compute end to end: 2,000 trivial computations launched, then
// all collected (get_result on each, and get_results on them all), on each store, with the thread
// backend (a thread per computation, as the seed's ThreadBackend) and the pool backend; and the
// latency from a computation's completion to get_result returning in the thread that waits for it.
//
// The targets (the Python original manages about 780 computations a second on this disk):
// FileSystemStore >= 2x that (1,560/s), SqliteStore >= 10,000/s, MemoryStore >= 200,000/s, and
// under 1 ms from completion to get_result.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "strand/async_compute.hpp"
#include "strand/filesystem_store.hpp"
#include "strand/memory_store.hpp"
#include "strand/sqlite_store.hpp"
#include "strand/store.hpp"

namespace {

constexpr int kComputations = 2000;

std::filesystem::path scratch(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("strand-compute-bench-" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

std::shared_ptr<strand::Store> make_store(const std::string& kind) {
  if (kind == "memory") return strand::MemoryStore::open();
  if (kind == "file") return strand::FileSystemStore::open(scratch("file"));
  return strand::open_store("sqlite://" + (scratch("sqlite") / "bench.db").string());
}

// Launched one by one (a call each) and collected one by one (get_result on each handle), or
// launched all at once (map: their records written together, one SQLite transaction) and collected
// all at once (get_results: one read of the finished records, one SQLite read transaction).
void launch_collect(benchmark::State& state, const std::string& kind, strand::Target backend,
                    bool all_at_once) {
  auto store = make_store(kind);
  auto fn =
      strand::async_compute([](int x) { return x + 1; }, {.store = store, .backend = backend});
  std::vector<strand::ComputationHandle<int>> handles;
  handles.reserve(kComputations);
  std::vector<int> inputs(kComputations);
  for (int i = 0; i < kComputations; ++i) inputs[static_cast<std::size_t>(i)] = i;
  for (auto _ : state) {
    handles.clear();
    if (all_at_once) {
      handles = fn.map(inputs);
    } else {
      for (int i = 0; i < kComputations; ++i) handles.push_back(fn(i));
    }
    if (all_at_once) {
      const std::vector<int> results = strand::get_results(handles, std::chrono::seconds(60));
      for (int i = 0; i < kComputations; ++i) {
        if (results[static_cast<std::size_t>(i)] != i + 1) state.SkipWithError("wrong result");
      }
    } else {
      for (int i = 0; i < kComputations; ++i) {
        if (handles[static_cast<std::size_t>(i)].get_result(std::chrono::seconds(60)) != i + 1) {
          state.SkipWithError("wrong result");
        }
      }
    }
    state.PauseTiming();
    for (const auto& key : store->keys()) store->erase(key);
    state.ResumeTiming();
  }
  state.counters["per_second"] =
      benchmark::Counter(kComputations, benchmark::Counter::kIsIterationInvariantRate);
}

// From the function's return to get_result returning, measured 200 times in sequence.
void completion_latency(benchmark::State& state, const std::string& kind) {
  auto store = make_store(kind);
  std::atomic<std::int64_t> returned_at{0};
  auto fn = strand::async_compute(
      [&returned_at](int x) {
        returned_at = std::chrono::steady_clock::now().time_since_epoch().count();
        return x;
      },
      {.store = store, .backend = strand::Target::pool});
  std::vector<double> micros;
  for (auto _ : state) {
    for (int i = 0; i < 200; ++i) {
      auto h = fn(i);
      (void)h.get_result(std::chrono::seconds(10));
      const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
      micros.push_back(static_cast<double>(now - returned_at.load()) / 1000.0);
    }
  }
  std::sort(micros.begin(), micros.end());
  state.counters["median_us"] = micros[micros.size() / 2];
  state.counters["p99_us"] = micros[micros.size() * 99 / 100];
}

void register_benchmarks() {
  for (const std::string kind : {"memory", "file", "sqlite"}) {
    for (auto backend : {strand::Target::thread, strand::Target::pool}) {
      for (const bool all_at_once : {false, true}) {
        const std::string name = "launch_collect_2000/" + kind + "/" +
                                 std::string(strand::to_string(backend)) +
                                 (all_at_once ? "/map+get_results" : "/call+get_result");
        benchmark::RegisterBenchmark(name.c_str(),
                                     [kind, backend, all_at_once](benchmark::State& s) {
                                       launch_collect(s, kind, backend, all_at_once);
                                     })
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime()
            ->Iterations(3);
      }
    }
    const std::string name = "completion_to_get_result/" + kind;
    benchmark::RegisterBenchmark(name.c_str(),
                                 [kind](benchmark::State& s) { completion_latency(s, kind); })
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime()
        ->Iterations(1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  register_benchmarks();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  std::printf(
      "\nTargets: per_second >= 1560 (file), >= 10000 (sqlite), >= 200000 (memory); "
      "median_us < 1000\n");
  return 0;
}
