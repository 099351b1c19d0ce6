// The process target: the same call as a thread task, run in a forked child. Results, streamed
// elements and exceptions come back; a crash or a hang stays in the child.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <stdexcept>
#include <strand/strand.hpp>
#include <string>
#include <vector>

using namespace std::chrono_literals;

// Anything nlohmann::json can write crosses the process boundary; a struct needs one line.
struct Stats {
  long count = 0;
  double mean = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Stats, count, mean)

Stats summarize(long n) {
  double sum = 0;
  for (long i = 1; i <= n; ++i) sum += static_cast<double>(i);
  return {n, sum / static_cast<double>(n)};
}

strand::Generator<std::vector<long>> chunks(long total, long size) {
  for (long start = 0; start < total; start += size) {
    std::vector<long> chunk;
    for (long i = start; i < start + size && i < total; ++i) chunk.push_back(i);
    co_yield chunk;
  }
}

int main() {
  // A result, computed in a child process.
  auto summarize_task = strand::as_task(strand::process, summarize);
  const Stats s = summarize_task(1000).get();
  std::printf("stats: count %ld, mean %.1f\n", s.count, s.mean);

  // Streaming: on_iter runs in the parent as each chunk arrives from the child.
  auto stream = strand::ProcessTaskrunner(chunks, strand::on_iter([](const std::vector<long>& c) {
                                            std::printf("chunk %ld..%ld\n", c.front(), c.back());
                                          }));
  stream(3000L, 1000L).get();

  // An exception comes back with its type: std::out_of_range is caught as itself.
  auto at = strand::as_task("process", [](int i) { return std::vector<int>{1, 2, 3}.at(i); });
  try {
    at(7).get();
  } catch (const std::out_of_range& e) {
    std::printf("out_of_range from the child\n");
  }

  // A crash fails only its own handle.
  auto crash = strand::as_task(strand::process, [] {
    std::signal(SIGSEGV, SIG_DFL);
    std::raise(SIGSEGV);
    return 0;
  });
  try {
    crash().get();
  } catch (const strand::ProcessCrashed& e) {
    std::printf("crashed: signal %d\n", e.signal());
  }

  // A hang is stopped for real: SIGTERM, then SIGKILL after the grace period.
  auto hang = strand::as_task(
      strand::process,
      [] {
        for (;;) std::this_thread::sleep_for(1s);
      },
      strand::ProcessOptions{.grace = 100ms, .timeout = 200ms});
  try {
    hang().get();
  } catch (const strand::Timeout&) {
    std::printf("timed out and stopped\n");
  }
  strand::wait_process_tasks_reaped(5s);
  std::printf("children left: %zu\n", strand::live_process_tasks());
  return 0;
}
