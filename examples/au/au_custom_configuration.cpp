// au's custom configuration: a store with a TTL and a binary format, and middleware.
#include <cstdio>
#include <filesystem>
#include <strand/strand.hpp>

using namespace std::chrono_literals;

int main() {
  const auto dir = std::filesystem::temp_directory_path() / "strand-example-custom";
  auto store = strand::FileSystemStore::open(
      dir, {.format = strand::Format::msgpack, .ttl = 1h});  // MessagePack: compact, fast
  auto metrics = std::make_shared<strand::MetricsMiddleware>();
  auto logging = std::make_shared<strand::LoggingMiddleware>(strand::LogLevel::info);

  auto complex_computation = strand::async_compute(
      [](std::vector<double> data) {
        double sum = 0;
        for (double d : data) sum += d;
        return sum / static_cast<double>(data.size());
      },
      {.store = store,
       .backend = strand::Target::process,
       .middleware = {logging, metrics},
       .name = "analyze"});
  const double mean = complex_computation(std::vector<double>{1, 2, 3, 4}).get_result(10s);
  std::printf("mean: %.2f\n", mean);
  std::printf("completed: %zu\n", metrics->get_stats().completed);
  std::filesystem::remove_all(dir);
  return 0;
}
