// au's monitoring and metrics. Computations run in child processes, and are counted all the same:
// the hooks run in the launching process.
#include <cstdio>
#include <strand/strand.hpp>
#include <vector>

using namespace std::chrono_literals;

int main() {
  auto metrics = std::make_shared<strand::MetricsMiddleware>();
  auto temp = strand::temporary_async_compute({.middleware = {metrics}});  // process backend
  auto monitored_function = temp([](int x) {
    if (x == 7) throw std::runtime_error("seven");
    return x * x;
  });
  std::vector<strand::ComputationHandle<int>> handles;
  for (int i = 0; i < 10; ++i) handles.push_back(monitored_function(i));
  for (auto& h : handles) {
    try {
      (void)h.get_result(10s);
    } catch (const std::runtime_error&) {
    }
  }
  const auto stats = metrics->get_stats();
  std::printf("Total: %zu\n", stats.total);
  std::printf("Completed: %zu\n", stats.completed);
  std::printf("Failed: %zu\n", stats.failed);
  std::printf("Avg Duration: %s\n", stats.avg_duration >= 0 ? "measured" : "?");
  return 0;
}
