// au's cleanup strategies: by hand with cleanup_expired(), and automatically with a probability on
// each access.
#include <cstdio>
#include <strand/strand.hpp>

using namespace std::chrono_literals;

int main() {
  auto temp = strand::temporary_async_compute({.backend = strand::Target::thread, .ttl = 1h});
  auto my_func = temp([](int x) { return x * 2; });
  auto h = my_func(4);
  (void)h.get_result(5s);

  // Age the record by an hour and a minute, as if it had finished long ago.
  auto record = my_func.store()->get(h.key());
  record.completed = std::chrono::system_clock::now() - 61min;
  my_func.store()->set(record);

  const auto removed = my_func.cleanup_expired();
  std::printf("Removed %zu expired results\n", removed);

  // Automatic: each get or set has a 10% chance of also cleaning up.
  auto store = strand::MemoryStore::open({.ttl = 1h, .cleanup_probability = 0.1});
  std::printf("auto cleanup probability: %.1f\n", store->options().cleanup_probability);
  return 0;
}
