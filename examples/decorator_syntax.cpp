// The seed's "Decorator syntax": as_task wraps a function so that calling it starts a task.
// Python decorates the definition; in C++ the wrapped function is an object that keeps the name.
#include <cstdio>
#include <numeric>
#include <strand/strand.hpp>
#include <vector>

void handle_chunk(const std::vector<long>& chunk) {
  std::printf("got a chunk: %ld .. %ld\n", chunk.front(), chunk.back());
}

strand::Generator<std::vector<long>> long_blocking_function_impl(long total_size, long chunk_size) {
  if (total_size < chunk_size) total_size = chunk_size;
  for (long n = 0; n < total_size / chunk_size; ++n) {
    std::vector<long> chunk(static_cast<std::size_t>(chunk_size));
    std::iota(chunk.begin(), chunk.end(), n * chunk_size);
    co_yield chunk;
  }
}

// @as_task(on_iter=handle_chunk): the default target is a thread
const auto long_blocking_function =
    strand::as_task(long_blocking_function_impl, strand::on_iter(handle_chunk));

// The target may be named by a tag or a string ("sync", "thread", "pool").
const auto square_on_pool = strand::as_task("pool", [](int x) { return x * x; });

int main() {
  // the function will run in a thread
  long_blocking_function(10'000'000L, 1'000'000L).get();

  std::vector<strand::Handle<int>> squares;
  for (int i = 1; i <= 4; ++i) squares.push_back(square_on_pool(i));
  int sum = 0;
  for (const auto& h : squares) sum += h.get();
  std::printf("sum of squares on the pool: %d\n", sum);
}
