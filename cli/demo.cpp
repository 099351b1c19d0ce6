#include "demo.hpp"
#include "graph_demo.hpp"

#include "jobs.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "strand/strand.hpp"

namespace strand::cli {
namespace {

// The seed's long_blocking_function: a range of total_size numbers, handed out in chunks as they
// are made, so on_iter can work on the first chunk while the rest is still being produced.
Generator<std::vector<long>> long_blocking_function(long total_size, long chunk_size) {
  if (total_size < chunk_size) total_size = chunk_size;
  for (long start = 0; start + chunk_size <= total_size; start += chunk_size) {
    std::vector<long> chunk(static_cast<std::size_t>(chunk_size));
    std::iota(chunk.begin(), chunk.end(), start);
    co_yield chunk;
  }
}

// A pool task with a little real work: the number of primes below n.
int count_primes(int n) {
  int count = 0;
  for (int i = 2; i < n; ++i) {
    bool prime = true;
    for (int d = 2; d * d <= i; ++d) {
      if (i % d == 0) {
        prime = false;
        break;
      }
    }
    count += prime ? 1 : 0;
  }
  return count;
}

void draw_progress(std::ostream& out, std::size_t done, std::size_t total, bool live) {
  constexpr std::size_t kWidth = 40;
  const std::size_t filled = total == 0 ? kWidth : done * kWidth / total;
  if (!live && done != total && done % (total / 4 == 0 ? 1 : total / 4) != 0) return;
  out << (live ? "\r" : "") << "  [" << std::string(filled, '#')
      << std::string(kWidth - filled, '.') << "] " << done << "/" << total << " tasks done"
      << (live ? "" : "\n") << std::flush;
}

}  // namespace

// Section 4: computations that outlive the process, with progress, in the embedded store.
static int run_compute_demo(const DemoOptions& options, std::ostream& out) {
  JobsOptions jobs{.store = options.store.empty() ? default_store_url() : options.store,
                   .keys = {},
                   .timeout_seconds = 30};
  out << "== 4. async_compute: results kept in a store ==\n";
  out << "  store: " << jobs.store << "  (inspect it later: strand jobs ls --store " << jobs.store
      << ")\n";
  auto store = open_store(jobs.store, {.ttl = std::chrono::hours(24)});
  store->cleanup_expired();
  // Each computation runs in a child process and writes its progress and result into the store.
  auto count_primes = async_compute(
      [](long limit) {
        long primes = 0;
        const long step = limit / 10;
        for (long n = 2; n < limit; ++n) {
          bool prime = true;
          for (long d = 2; d * d <= n && prime; ++d) prime = n % d != 0;
          primes += prime ? 1 : 0;
          if (n % step == 0) {
            report_progress(static_cast<double>(n) / static_cast<double>(limit),
                            std::to_string(primes) + " primes so far");
            std::this_thread::sleep_for(
                std::chrono::milliseconds(30));  // slow enough to watch the bars
          }
        }
        return primes;
      },
      {.store = store, .backend = Target::process, .name = "count_primes"});
  std::vector<ComputationHandle<long>> handles;
  for (long limit : {20'000L, 40'000L, 60'000L}) {
    handles.push_back(count_primes(limit));
    jobs.keys.push_back(handles.back().key());
  }
  const int waited = jobs_wait(jobs, out, std::cerr);
  for (auto& h : handles)
    out << "  " << h.key() << " -> " << h.get_result(std::chrono::seconds(30)) << " primes\n";
  out << "\n";
  const int listed = jobs_ls(jobs, out, std::cerr);
  return waited != 0 ? waited : listed;
}

// Section 5: jobs by name, written into the store and run by two workers, with their progress.
static int run_jobs_demo(const DemoOptions& options, std::ostream& out) {
  JobsOptions jobs{.store = options.store.empty() ? default_store_url() : options.store,
                   .keys = {},
                   .timeout_seconds = 30};
  out << "\n== 5. Jobs by name: a writer, two workers, one store ==\n";
  auto store = open_store(jobs.store, {.ttl = std::chrono::hours(24)});
  if (!std::dynamic_pointer_cast<JobQueue>(store)) {
    out << "  " << jobs.store << " has no job queue: skipped\n";
    return 0;
  }
  // What the workers may run: functions by name (a job never brings code with it).
  Registry registry;
  registry.add("sum_of_squares", [](std::stop_token stop, long n) {
    long total = 0;
    for (long i = 1; i <= n && !stop.stop_requested(); ++i) {
      total += i * i;
      if (i % (n / 5) == 0) {
        report_progress(static_cast<double>(i) / static_cast<double>(n), "at " + std::to_string(i));
        std::this_thread::sleep_for(std::chrono::milliseconds(40));  // slow enough to watch
      }
    }
    return total;
  });
  StoreTaskWriter<long> sum_of_squares(store, "sum_of_squares", {.queue = "demo"});
  std::vector<ComputationHandle<long>> handles;
  for (long n : {100L, 200L, 300L, 400L}) {
    handles.push_back(sum_of_squares(n));
    jobs.keys.push_back(handles.back().key());
  }
  out << "  4 jobs written to " << jobs.store << " (queue \"demo\"); two workers take them:\n";
  Worker first(store, registry, {.concurrency = 1, .queues = {"demo"}, .name = "demo-worker-1"});
  Worker second(store, registry, {.concurrency = 1, .queues = {"demo"}, .name = "demo-worker-2"});
  const int waited = jobs_wait(jobs, out, std::cerr);
  for (auto& h : handles) {
    const Record r = h.record();
    out << "  " << h.key() << " -> " << h.get_result(std::chrono::seconds(30)) << " (ran on "
        << (r.job ? r.job->worker : "?") << ")\n";
  }
  first.stop();
  second.stop();
  out << "  workers: " << first.stats().completed << " + " << second.stats().completed
      << " jobs completed\n";
  return waited;
}

int run_demo(const DemoOptions& options, std::ostream& out) {
  using namespace std::chrono;
  const bool live = &out == &std::cout && isatty(STDOUT_FILENO) == 1;

  out << "== 1. ThreadTaskrunner + on_iter: the seed's basic usage ==\n";
  out << "long_blocking_function(" << options.total << ", " << options.chunk
      << ") runs in a thread; each chunk reaches on_iter as soon as it is made:\n";
  long items = 0;
  long sum = 0;
  std::mutex out_mutex;  // on_iter prints from the task's thread while this one prints too
  auto handle_chunk = [&](const std::vector<long>& chunk) {
    std::lock_guard lock(out_mutex);
    items += static_cast<long>(chunk.size());
    sum += std::accumulate(chunk.begin(), chunk.end(), 0L);
    out << "  got a chunk: " << chunk.front() << " .. " << chunk.back() << " (" << chunk.size()
        << " items)\n";
  };
  auto runner = ThreadTaskrunner(long_blocking_function, on_iter(handle_chunk));
  Handle<void> chunks = runner(options.total, options.chunk);
  {
    std::lock_guard lock(out_mutex);
    out << "  (the call returned at once; status right after: " << chunks.status() << ")\n";
  }
  chunks.get();
  out << "  done: status " << chunks.status() << ", " << items << " items, sum " << sum << "\n\n";

  out << "== 2. A batch of " << options.tasks << " pool tasks on " << default_pool().size()
      << " workers, watched as they complete ==\n";
  auto primes = as_task(strand::pool, count_primes);
  const auto start = steady_clock::now();
  std::vector<Handle<int>> batch;
  batch.reserve(static_cast<std::size_t>(options.tasks));
  for (int i = 0; i < options.tasks; ++i) batch.push_back(primes(20'000 + 100 * i));
  std::size_t done = 0;
  long total_primes = 0;
  for (const Handle<int>& h : as_completed(batch)) {
    total_primes += h.get();
    draw_progress(out, ++done, batch.size(), live);
  }
  if (live) out << "\n";
  const auto ms = duration_cast<milliseconds>(steady_clock::now() - start).count();
  out << "  " << total_primes << " primes counted in " << ms << " ms\n\n";

  out << "== 3. One handle, every outcome ==\n";
  auto failing = as_task("thread", [](int x) -> int {
    if (x < 0) throw std::invalid_argument("x must be positive");
    return x * x;
  });
  Handle<int> bad = failing(-5);
  try {
    bad.get();
  } catch (const std::invalid_argument& e) {
    out << "  get() rethrew std::invalid_argument: " << e.what() << " (status " << bad.status()
        << ")\n";
  }
  Handle<int> slow = default_pool().submit([](std::stop_token stop) {
    while (!stop.stop_requested()) std::this_thread::sleep_for(milliseconds(1));
    return 0;
  });
  try {
    slow.get(milliseconds(20));
  } catch (const Timeout& e) {
    out << "  get(20ms) on a slow task: " << e.what() << "\n";
  }
  out << "  cancel() -> " << std::boolalpha << slow.cancel() << ", status " << slow.status()
      << "\n\n";
  run_graph_demo(out);
  out << "\n";
  const int computed = run_compute_demo(options, out);
  const int jobs = run_jobs_demo(options, out);
  return computed != 0 ? computed : jobs;
}

}  // namespace strand::cli
