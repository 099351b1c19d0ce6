// bench/process_bench.cpp — strand's process target against a hand-written fork + pipe + waitpid.
//
// Round trip: a process task returning x * 2, 2,000 times in sequence (fork, compute, send the
// result, reap), awaited before the next. Burst: 200 process tasks launched at once, then all
// awaited. The baseline does the least a correct program can: a pipe, fork, write the int, _exit,
// read it, waitpid. Target: round trip <= 1.3x the baseline.
#include <sys/wait.h>
#include <unistd.h>

#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>
#include <vector>

#include "ratio_table.hpp"
#include "strand/runner.hpp"

namespace {

constexpr int kTrips = 2000;
constexpr int kBurst = 200;

// The baseline: one child computing x * 2.
struct RawChild {
  pid_t pid;
  int fd;
};

RawChild raw_start(int x) {
  int fds[2];
  if (::pipe(fds) != 0) std::abort();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    const int result = x * 2;
    (void)!::write(fds[1], &result, sizeof result);
    ::_exit(0);
  }
  ::close(fds[1]);
  return {pid, fds[0]};
}

int raw_finish(RawChild child) {
  int result = 0;
  if (::read(child.fd, &result, sizeof result) != sizeof result) std::abort();
  ::close(child.fd);
  int status = 0;
  ::waitpid(child.pid, &status, 0);
  return result;
}

void per_unit(benchmark::State& state, const char* name, int units) {
  state.counters[name] = benchmark::Counter(
      units, benchmark::Counter::Flags(benchmark::Counter::kIsIterationInvariantRate |
                                       benchmark::Counter::kInvert));
}

void roundtrip_strand(benchmark::State& state) {
  const auto twice = strand::as_task(strand::process, [](int x) { return x * 2; });
  for (auto _ : state) {
    for (int i = 0; i < kTrips; ++i) {
      if (twice(i).get() != i * 2) std::abort();
    }
  }
  per_unit(state, "per_trip", kTrips);
}

void roundtrip_raw(benchmark::State& state) {
  for (auto _ : state) {
    for (int i = 0; i < kTrips; ++i) {
      if (raw_finish(raw_start(i)) != i * 2) std::abort();
    }
  }
  per_unit(state, "per_trip", kTrips);
}

void burst_strand(benchmark::State& state) {
  const auto twice = strand::as_task(strand::process, [](int x) { return x * 2; });
  std::vector<strand::Handle<int>> handles;
  for (auto _ : state) {
    handles.clear();
    for (int i = 0; i < kBurst; ++i) handles.push_back(twice(i));
    for (int i = 0; i < kBurst; ++i) {
      if (handles[static_cast<std::size_t>(i)].get() != i * 2) std::abort();
    }
  }
  per_unit(state, "per_task", kBurst);
}

void burst_raw(benchmark::State& state) {
  std::vector<RawChild> children;
  for (auto _ : state) {
    children.clear();
    for (int i = 0; i < kBurst; ++i) children.push_back(raw_start(i));
    for (int i = 0; i < kBurst; ++i) {
      if (raw_finish(children[static_cast<std::size_t>(i)]) != i * 2) std::abort();
    }
  }
  per_unit(state, "per_task", kBurst);
}

constexpr const char* kTripStrand = "roundtrip2000/strand_process";
constexpr const char* kTripRaw = "roundtrip2000/fork_pipe_waitpid";
constexpr const char* kBurstStrand = "burst200/strand_process";
constexpr const char* kBurstRaw = "burst200/fork_pipe_waitpid";

void register_benchmarks() {
  using strand::bench::add;
  add(kTripStrand, roundtrip_strand, 2);
  add(kTripRaw, roundtrip_raw, 2);
  add(kBurstStrand, burst_strand, 10);
  add(kBurstRaw, burst_raw, 10);
}

constexpr strand::bench::Ratio kRows[] = {
    {"round trip: strand process / raw fork+pipe", kTripStrand, kTripRaw, "<= 1.30", 1.3, false,
     "per_trip", 1e6},
    {"200 at once: strand process / raw fork+pipe", kBurstStrand, kBurstRaw, "", 0, false,
     "per_task", 1e6},
};

}  // namespace

int main(int argc, char** argv) {
  return strand::bench::run(argc, argv, register_benchmarks, kRows,
                            "below 1: ours is faster; microseconds per task");
}
