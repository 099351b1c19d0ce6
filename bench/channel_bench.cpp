// bench/channel_bench.cpp — strand's channels and coroutines against their peers, in one binary.
//
// Throughput: 10,000,000 ints from one producer thread to one consumer thread through a queue of
// capacity 1024: strand::Channel, Boost.Fiber's buffered_channel (used from two plain threads),
// moodycamel's BlockingConcurrentQueue (unbounded: it has no capacity to set), and a bounded
// std::deque behind a mutex and two condition variables.
// Ping-pong over unbuffered channels: two threads (strand::Channel vs a mutex+condition-variable
// pair; 200,000 round trips, since a futex wake-up is microseconds), and two coroutines on one
// EventLoop (1,000,000 round trips; Boost.Fiber's fibers on one thread alongside).
// Select: one consumer thread, a strand::Select over N buffered channels fed by N producer
// threads, N = 2, 4, 8, 16: messages per second, and how it grows with N.
//
// Each figure is a per-item (or per-round-trip) time; with --benchmark_repetitions the table uses
// the median repetition. Ratios are ours / peer: below 1, ours is faster.
#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <benchmark/benchmark.h>
#include <concurrentqueue/blockingconcurrentqueue.h>
#include <boost/fiber/all.hpp>

#include "strand/channel.hpp"
#include "strand/event_loop.hpp"
#include "strand/select.hpp"

namespace {

constexpr std::int64_t kItems = 10'000'000;
constexpr std::size_t kCapacity = 1024;
constexpr std::int64_t kThreadRoundTrips = 200'000;
constexpr std::int64_t kCoroRoundTrips = 1'000'000;
constexpr std::int64_t kSelectItems = 2'000'000;

// "per_item": real time per item, a rate over all iterations inverted (printed as e.g. "52.1ns").
void set_per_item(benchmark::State& state, std::int64_t items) {
  state.counters["per_item"] =
      benchmark::Counter(static_cast<double>(items),
                         benchmark::Counter::Flags(benchmark::Counter::kIsIterationInvariantRate |
                                                   benchmark::Counter::kInvert));
}

// --- throughput ------------------------------------------------------------------------------

template <class Produce, class Consume>
void throughput(benchmark::State& state, Produce produce, Consume consume) {
  for (auto _ : state) {
    std::int64_t sum = 0;
    std::thread producer([&] {
      for (std::int64_t i = 0; i < kItems; ++i) produce(static_cast<int>(i & 0xffff));
    });
    for (std::int64_t i = 0; i < kItems; ++i) sum += consume();
    producer.join();
    benchmark::DoNotOptimize(sum);
  }
  set_per_item(state, kItems);
}

void throughput_strand(benchmark::State& state) {
  strand::Channel<int> ch(kCapacity);
  throughput(
      state, [&](int v) { ch.put(v); }, [&] { return *ch.get(); });
}

void throughput_fiber(benchmark::State& state) {
  boost::fibers::buffered_channel<int> ch(kCapacity);  // holds capacity - 1 values
  throughput(
      state, [&](int v) { ch.push(v); },
      [&] {
        int v = 0;
        ch.pop(v);
        return v;
      });
}

void throughput_moodycamel(benchmark::State& state) {
  moodycamel::BlockingConcurrentQueue<int> q(kCapacity);
  moodycamel::ProducerToken token(q);
  throughput(
      state, [&](int v) { q.enqueue(token, v); },
      [&] {
        int v = 0;
        q.wait_dequeue(v);
        return v;
      });
}

// The baseline: a bounded deque, one mutex, two condition variables.
class MutexQueue {
 public:
  explicit MutexQueue(std::size_t capacity) : capacity_(capacity) {}
  void put(int v) {
    std::unique_lock lock(mutex_);
    not_full_.wait(lock, [&] { return queue_.size() < capacity_; });
    queue_.push_back(v);
    lock.unlock();
    not_empty_.notify_one();
  }
  int get() {
    std::unique_lock lock(mutex_);
    not_empty_.wait(lock, [&] { return !queue_.empty(); });
    const int v = queue_.front();
    queue_.pop_front();
    lock.unlock();
    not_full_.notify_one();
    return v;
  }

 private:
  std::size_t capacity_;
  std::mutex mutex_;
  std::condition_variable not_full_, not_empty_;
  std::deque<int> queue_;
};

void throughput_mutex(benchmark::State& state) {
  MutexQueue q(kCapacity);
  throughput(
      state, [&](int v) { q.put(v); }, [&] { return q.get(); });
}

// --- ping-pong -------------------------------------------------------------------------------

void pingpong_strand_threads(benchmark::State& state) {
  strand::Channel<int> ping, pong;
  for (auto _ : state) {
    std::thread partner([&] {
      for (std::int64_t i = 0; i < kThreadRoundTrips; ++i) pong.put(*ping.get() + 1);
    });
    int v = 0;
    for (std::int64_t i = 0; i < kThreadRoundTrips; ++i) {
      ping.put(v);
      v = *pong.get();
    }
    partner.join();
    benchmark::DoNotOptimize(v);
  }
  set_per_item(state, kThreadRoundTrips);
}

// An unbuffered channel made of a mutex and a condition variable: a slot and a taken flag.
class MutexRendezvous {
 public:
  void put(int v) {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return !full_; });
    value_ = v;
    full_ = true;
    changed_.notify_all();
    changed_.wait(lock, [&] { return !full_; });  // until taken: a rendezvous
  }
  int get() {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return full_; });
    full_ = false;
    changed_.notify_all();
    return value_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  int value_ = 0;
  bool full_ = false;
};

void pingpong_mutex_threads(benchmark::State& state) {
  MutexRendezvous ping, pong;
  for (auto _ : state) {
    std::thread partner([&] {
      for (std::int64_t i = 0; i < kThreadRoundTrips; ++i) pong.put(ping.get() + 1);
    });
    int v = 0;
    for (std::int64_t i = 0; i < kThreadRoundTrips; ++i) {
      ping.put(v);
      v = pong.get();
    }
    partner.join();
    benchmark::DoNotOptimize(v);
  }
  set_per_item(state, kThreadRoundTrips);
}

strand::Coro<void> coro_player(strand::Channel<int>& in, strand::Channel<int>& out) {
  for (std::int64_t i = 0; i < kCoroRoundTrips; ++i) co_await out.send(*co_await in.recv() + 1);
}
strand::Coro<int> coro_starter(strand::Channel<int>& out, strand::Channel<int>& in) {
  int v = 0;
  for (std::int64_t i = 0; i < kCoroRoundTrips; ++i) {
    co_await out.send(v);
    v = *co_await in.recv();
  }
  co_return v;
}

void pingpong_strand_coroutines(benchmark::State& state) {
  strand::Channel<int> ping, pong;
  strand::EventLoop loop;
  for (auto _ : state) {
    loop.spawn(coro_player(ping, pong));
    benchmark::DoNotOptimize(loop.run(coro_starter(ping, pong)));
    loop.run();
  }
  set_per_item(state, kCoroRoundTrips);
}

void pingpong_fiber_fibers(benchmark::State& state) {
  for (auto _ : state) {
    boost::fibers::unbuffered_channel<int> ping, pong;
    boost::fibers::fiber partner([&] {
      for (std::int64_t i = 0; i < kCoroRoundTrips; ++i) {
        int v = 0;
        ping.pop(v);
        pong.push(v + 1);
      }
    });
    int v = 0;
    for (std::int64_t i = 0; i < kCoroRoundTrips; ++i) {
      ping.push(v);
      pong.pop(v);
    }
    partner.join();
    benchmark::DoNotOptimize(v);
  }
  set_per_item(state, kCoroRoundTrips);
}

// --- select ----------------------------------------------------------------------------------

void select_strand(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  for (auto _ : state) {
    std::vector<std::unique_ptr<strand::Channel<int>>> chans;
    for (std::size_t i = 0; i < n; ++i) chans.push_back(std::make_unique<strand::Channel<int>>(64));
    const std::int64_t each = kSelectItems / static_cast<std::int64_t>(n);
    std::vector<std::thread> producers;
    for (auto& ch : chans) {
      producers.emplace_back([&ch, each] {
        for (std::int64_t i = 0; i < each; ++i) ch->put(1);
      });
    }
    std::int64_t received = 0;
    strand::Select sel;
    for (auto& ch : chans) sel.recv(*ch, [&received](std::optional<int> v) { received += *v; });
    while (received < each * static_cast<std::int64_t>(n)) sel.wait();
    for (auto& t : producers) t.join();
  }
  set_per_item(state, kSelectItems);
}

// --- the table -------------------------------------------------------------------------------

constexpr const char* kThroughputStrand = "throughput/strand_channel";
constexpr const char* kThroughputFiber = "throughput/boost_fiber_buffered_channel";
constexpr const char* kThroughputMoody = "throughput/moodycamel_blocking_queue";
constexpr const char* kThroughputMutex = "throughput/mutex_cv_deque";
constexpr const char* kPingStrandThreads = "pingpong_threads/strand_channel";
constexpr const char* kPingMutexThreads = "pingpong_threads/mutex_cv";
constexpr const char* kPingStrandCoro = "pingpong_one_thread/strand_coroutines";
constexpr const char* kPingFiber = "pingpong_one_thread/boost_fibers";

void register_benchmarks() {
  const auto add = [](const char* name, void (*fn)(benchmark::State&)) {
    return benchmark::RegisterBenchmark(name, fn)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime()
        ->Iterations(1);
  };
  add(kThroughputStrand, throughput_strand);
  add(kThroughputFiber, throughput_fiber);
  add(kThroughputMoody, throughput_moodycamel);
  add(kThroughputMutex, throughput_mutex);
  add(kPingStrandThreads, pingpong_strand_threads);
  add(kPingMutexThreads, pingpong_mutex_threads);
  add(kPingStrandCoro, pingpong_strand_coroutines);
  add(kPingFiber, pingpong_fiber_fibers);
  add("select/strand", select_strand)->Arg(2)->Arg(4)->Arg(8)->Arg(16);
}

// Keeps every repetition's per-item time, by benchmark name (with its argument).
class RecordingReporter : public benchmark::ConsoleReporter {
 public:
  RecordingReporter() : ConsoleReporter(OO_Tabular) {}
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      if (run.run_type != Run::RT_Iteration || run.error_occurred) continue;
      std::string name = run.run_name.function_name;
      if (!run.run_name.args.empty()) name += "/" + run.run_name.args;
      if (auto it = run.counters.find("per_item"); it != run.counters.end()) {
        ns_[name].push_back(it->second.value * 1e9);
      }
    }
  }
  // The median repetition's ns per item; 0 if the benchmark did not run.
  [[nodiscard]] double median(const std::string& name) const {
    auto it = ns_.find(name);
    if (it == ns_.end() || it->second.empty()) return 0;
    std::vector<double> v = it->second;
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  }

 private:
  std::map<std::string, std::vector<double>> ns_;
};

void print_table(const RecordingReporter& r) {
  struct Row {
    const char* label;
    const char* ours;
    const char* peer;
    const char* target;
    double limit;  // on the ratio; 0: for information
  };
  const Row rows[] = {
      {"throughput: ours / moodycamel", kThroughputStrand, kThroughputMoody, "<= 1.00", 1.0},
      {"throughput: ours / Boost.Fiber buffered", kThroughputStrand, kThroughputFiber, "", 0},
      {"throughput: ours / mutex+cv deque", kThroughputStrand, kThroughputMutex, "", 0},
      {"ping-pong threads: ours / mutex+cv", kPingStrandThreads, kPingMutexThreads, "", 0},
      {"ping-pong one thread: coroutines / fibers", kPingStrandCoro, kPingFiber, "", 0},
  };
  std::printf(
      "\nMedians, ns per item (per round trip for ping-pong); ratio ours / peer (below 1: "
      "ours is faster)\n");
  std::printf("%-44s %10s %10s %7s %8s  %s\n", "", "ours", "peer", "ratio", "target", "verdict");
  for (const Row& row : rows) {
    const double a = r.median(row.ours), b = r.median(row.peer);
    if (a == 0 || b == 0) {
      std::printf("%-44s %10s\n", row.label, "no result");
      continue;
    }
    const char* verdict = row.limit == 0 ? "" : (a / b <= row.limit ? "met" : "MISSED");
    std::printf("%-44s %10.1f %10.1f %7.3f %8s  %s\n", row.label, a, b, a / b, row.target, verdict);
  }
  if (const double coro = r.median(kPingStrandCoro); coro > 0) {
    std::printf("%-44s %10.1f %10s %7s %8s  %s\n", "ping-pong coroutines, ns per round trip", coro,
                "", "", "<= 100", coro <= 100 ? "met" : "MISSED");
  }
  if (const double tput = r.median(kThroughputStrand); tput > 0) {
    std::printf("%-44s %10.2f\n", "throughput: ours, million ints per second", 1e3 / tput);
  }
  std::printf("\nselect over N channels, N producer threads, one consumer:\n");
  for (int n : {2, 4, 8, 16}) {
    const double ns = r.median("select/strand/" + std::to_string(n));
    if (ns > 0)
      std::printf("  N = %2d: %8.1f ns per message, %6.2f million messages/s\n", n, ns, 1e3 / ns);
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  register_benchmarks();
  RecordingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  print_table(reporter);
  return 0;
}
