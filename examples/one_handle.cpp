// The README's "one handle" and "pool" sections, as a program: every way a task can end, watched
// through strand::Handle, on a ThreadPool and a TaskGroup.
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <strand/strand.hpp>
#include <vector>

using namespace std::chrono_literals;

int main() {
  strand::ThreadPool pool;  // one worker per core

  strand::Handle<int> h = pool.submit([](int x) { return x * 2; }, 21);
  const int value = h.get();  // blocks until done
  std::printf("get: %d (%s)\n", value, std::string(strand::to_string(h.status())).c_str());
  strand::Handle<int> next = h.then([](int v) { return v + 1; });
  std::printf("then: %d\n", next.get(2s));

  strand::Handle<int> bad = pool.submit([]() -> int { throw std::out_of_range("index 7"); });
  try {
    bad.get();
  } catch (const std::out_of_range& e) {
    std::printf("failed: std::out_of_range: %s\n", e.what());
  }

  // A task that takes a std::stop_token runs until cancel() requests it.
  strand::Handle<int> slow = pool.submit([](std::stop_token stop) {
    while (!stop.stop_requested()) std::this_thread::sleep_for(1ms);
    return 0;
  });
  try {
    slow.get(10ms);
  } catch (const strand::Timeout& e) {
    std::printf("timeout: %s\n", e.what());
  }
  const bool cancelled = slow.cancel();
  std::printf("cancel: %s, status %s\n", cancelled ? "true" : "false",
              std::string(strand::to_string(slow.status())).c_str());

  // Many tasks, one wait, no handle per task.
  std::vector<int> items(1000, 1);
  std::vector<int> doubled(items.size());
  strand::TaskGroup group(pool);
  for (std::size_t i = 0; i < items.size(); ++i) {
    group.run([&, i] { doubled[i] = items[i] * 2; });
  }
  group.wait();
  long sum = 0;
  for (int v : doubled) sum += v;
  std::printf("task group: %ld\n", sum);

  pool.shutdown(strand::ShutdownMode::drain);
  try {
    pool.submit([] { return 1; });
  } catch (const strand::ExecutorShutDown& e) {
    std::printf("after shutdown: %s\n", e.what());
  }
}
