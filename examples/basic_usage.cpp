// The seed's "Basic Usage": a long blocking function that produces its result in chunks runs in a
// thread, and each chunk is handled as soon as it exists.
#include <cstdio>
#include <numeric>
#include <strand/strand.hpp>
#include <vector>

void handle_chunk(const std::vector<long>& chunk) {
  std::printf("got a chunk: %ld .. %ld\n", chunk.front(), chunk.back());
}

strand::Generator<std::vector<long>> long_blocking_function(long total_size, long chunk_size) {
  if (total_size < chunk_size) total_size = chunk_size;
  for (long n = 0; n < total_size / chunk_size; ++n) {
    std::vector<long> chunk(static_cast<std::size_t>(chunk_size));
    std::iota(chunk.begin(), chunk.end(), n * chunk_size);
    co_yield chunk;
  }
}

int main() {
  // instantiate the runner
  auto runner = strand::ThreadTaskrunner(long_blocking_function, strand::on_iter(handle_chunk));

  // call the runner with the arguments to pass to the function; it runs in a thread
  strand::Handle<void> handle = runner(10'000'000L, 1'000'000L);

  // the call returned at once; this thread is free until it wants the outcome
  handle.get();
  std::printf("status: %s\n", std::string(strand::to_string(handle.status())).c_str());
}
