// bench/pool_bench.cpp — strand's pool against its peers, in one binary and one run.
//
// Empty tasks, 1,000,000 per round, submitted from the benchmark thread and awaited: a
// strand::TaskGroup, a strand::Handle per task, a oneTBB task_group, a Boost.Asio thread_pool, a
// plain mutex-and-condition-variable pool, and std::async (20,000 tasks: it starts a thread each).
// Recursive fib(27), a task per call above a serial cutoff of 15: strand::TaskGroup vs oneTBB.
// A table of ratios follows, with the targets: ours (TaskGroup) ns/task <= 0.8x oneTBB's
// and below the plain pool's; fib <= 1.0x oneTBB.
//
// Each benchmark builds its executor once, outside the timed loop, and runs one untimed round
// first, so thread start-up, first-touch page faults and queue growth are timed for no one.
// Every pool has one thread per core (oneTBB's default arena counts the waiting thread as one).
#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <future>
#include <latch>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <benchmark/benchmark.h>
#include <tbb/task_group.h>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include "ratio_table.hpp"
#include "strand/task_group.hpp"
#include "strand/thread_pool.hpp"

namespace {

constexpr std::int64_t kTasks = 1'000'000;
constexpr std::int64_t kAsyncTasks = 20'000;  // a thread per task: 1M would take minutes
constexpr int kFibN = 27;
constexpr int kFibCutoff = 15;
constexpr int kFibExpected = 196418;

// The baseline any pool should beat: one locked queue of std::function, one condition variable.
class MutexPool {
 public:
  explicit MutexPool(std::size_t threads) {
    for (std::size_t i = 0; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }
  MutexPool(const MutexPool&) = delete;
  MutexPool& operator=(const MutexPool&) = delete;
  ~MutexPool() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    ready_.notify_all();
    for (auto& worker : workers_) worker.join();
  }

  void post(std::function<void()> task) {
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(std::move(task));
    }
    ready_.notify_one();
  }

 private:
  void work() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock lock(mutex_);
        ready_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stopping, and everything queued has run
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      task();
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;  // last: the threads use everything above
};

// One untimed round, then one per iteration. "per_task" is the real time per task: a rate of tasks
// per second over all iterations, inverted (the console prints it with its unit, e.g. "52.1ns").
template <class Round>
void run_rounds(benchmark::State& state, std::int64_t tasks, Round round) {
  round();
  for (auto _ : state) round();
  state.counters["per_task"] =
      benchmark::Counter(static_cast<double>(tasks),
                         benchmark::Counter::Flags(benchmark::Counter::kIsIterationInvariantRate |
                                                   benchmark::Counter::kInvert));
}

void empty_strand_group_on(benchmark::State& state, strand::ThreadPool& pool) {
  run_rounds(state, kTasks, [&] {
    strand::TaskGroup group(pool);
    for (std::int64_t i = 0; i < kTasks; ++i) group.run([] {});
    group.wait();
  });
}

void empty_strand_group(benchmark::State& state) {
  strand::ThreadPool pool;
  empty_strand_group_on(state, pool);
}

// The cost of a Handle per task; destroying the handles is part of that cost, so it is timed.
void empty_strand_handles(benchmark::State& state) {
  strand::ThreadPool pool;
  std::vector<strand::Handle<void>> handles;
  handles.reserve(kTasks);
  run_rounds(state, kTasks, [&] {
    for (std::int64_t i = 0; i < kTasks; ++i) handles.push_back(pool.submit([] {}));
    for (const auto& handle : handles) handle.wait();
    handles.clear();
  });
}

void empty_tbb_group(benchmark::State& state) {
  run_rounds(state, kTasks, [] {
    tbb::task_group group;
    for (std::int64_t i = 0; i < kTasks; ++i) group.run([] {});
    group.wait();
  });
}

// A pool that lives across rounds, as ours does (joining per round would time thread start-up),
// awaited through a latch: one atomic decrement per task, as a task group's own counter costs.
void empty_asio_pool(benchmark::State& state) {
  boost::asio::thread_pool pool(strand::hardware_threads());
  run_rounds(state, kTasks, [&] {
    std::latch done(kTasks);
    for (std::int64_t i = 0; i < kTasks; ++i)
      boost::asio::post(pool, [&done] { done.count_down(); });
    done.wait();
  });
}

void empty_mutex_pool(benchmark::State& state) {
  MutexPool pool(strand::hardware_threads());
  run_rounds(state, kTasks, [&] {
    std::latch done(kTasks);
    for (std::int64_t i = 0; i < kTasks; ++i) pool.post([&done] { done.count_down(); });
    done.wait();
  });
}

void empty_std_async(benchmark::State& state) {
  std::vector<std::future<void>> futures;
  futures.reserve(kAsyncTasks);
  run_rounds(state, kAsyncTasks, [&] {
    for (std::int64_t i = 0; i < kAsyncTasks; ++i) {
      futures.push_back(std::async(std::launch::async, [] {}));
    }
    for (const auto& future : futures) future.wait();
    futures.clear();
  });
}

// Not marked noinline or volatile: both contenders share it, so the compiler's work on it counts
// the same for each.
int fib_serial(int n) {
  return n < 2 ? n : fib_serial(n - 1) + fib_serial(n - 2);
}

int fib_strand(strand::ThreadPool& pool, int n) {
  if (n <= kFibCutoff) return fib_serial(n);
  int x = 0;
  strand::TaskGroup group(pool);
  group.run([&] { x = fib_strand(pool, n - 1); });
  const int y = fib_strand(pool, n - 2);
  group.wait();
  return x + y;
}

int fib_tbb(int n) {
  if (n <= kFibCutoff) return fib_serial(n);
  int x = 0;
  tbb::task_group group;
  group.run([&] { x = fib_tbb(n - 1); });
  const int y = fib_tbb(n - 2);
  group.wait();
  return x + y;
}

// A wrong answer would make the timing meaningless, so every round checks it.
template <class Fib>
void run_fib(benchmark::State& state, Fib fib) {
  bool right = fib(kFibN) == kFibExpected;  // the untimed round
  for (auto _ : state) {
    if (fib(kFibN) != kFibExpected) right = false;
  }
  if (!right) state.SkipWithError("fib(27) != 196418");
}

void fib_strand_group(benchmark::State& state) {
  strand::ThreadPool pool;
  run_fib(state, [&](int n) { return fib_strand(pool, n); });
}

void fib_tbb_group(benchmark::State& state) {
  run_fib(state, fib_tbb);
}

// Benchmark names, shared by the registrations and the ratio table.
constexpr const char* kStrandGroup = "empty/strand_task_group";
constexpr const char* kStrandHandles = "empty/strand_handles";
constexpr const char* kTbbGroup = "empty/tbb_task_group";
constexpr const char* kAsioPool = "empty/asio_thread_pool";
constexpr const char* kMutexPool = "empty/mutex_cv_pool";
constexpr const char* kStdAsync = "empty/std_async_20k";
constexpr const char* kFibStrand = "fib27/strand_task_group";
constexpr const char* kFibTbb = "fib27/tbb_task_group";

void register_benchmarks() {
  // A fixed number of iterations keeps the whole run well under a minute on two cores.
  using strand::bench::add;
  add(kStrandGroup, empty_strand_group, 5);
  add(kStrandHandles, empty_strand_handles, 5);
  add(kTbbGroup, empty_tbb_group, 5);
  add(kAsioPool, empty_asio_pool, 5);
  add(kMutexPool, empty_mutex_pool, 5);
  add(kStdAsync, empty_std_async, 5);
  add(kFibStrand, fib_strand_group, 200);  // a round is about a millisecond: more of them
  add(kFibTbb, fib_tbb_group, 200);
}

// ns per task for the empty tasks (std::async runs fewer, so only per task compares), ms per
// round for fib.
constexpr strand::bench::Ratio kRows[] = {
    {"TaskGroup / oneTBB task_group", kStrandGroup, kTbbGroup, "<= 0.80", 0.8, false, "per_task",
     1e9},
    {"TaskGroup / mutex+cv pool", kStrandGroup, kMutexPool, "< 1.00", 1.0, true, "per_task", 1e9},
    {"TaskGroup / Boost.Asio thread_pool", kStrandGroup, kAsioPool, "", 0, false, "per_task", 1e9},
    {"TaskGroup / std::async", kStrandGroup, kStdAsync, "", 0, false, "per_task", 1e9},
    {"Handles / oneTBB task_group", kStrandHandles, kTbbGroup, "", 0, false, "per_task", 1e9},
    {"Handles / TaskGroup", kStrandHandles, kStrandGroup, "", 0, false, "per_task", 1e9},
    {"Handles / mutex+cv pool", kStrandHandles, kMutexPool, "", 0, false, "per_task", 1e9},
    {"fib(27) TaskGroup / oneTBB", kFibStrand, kFibTbb, "<= 1.00", 1.0},
};

}  // namespace

int main(int argc, char** argv) {
  return strand::bench::run(argc, argv, register_benchmarks, kRows,
                            "below 1: ours is faster; ns per task, fib in ms per round");
}
