// The README's "many tasks at once" section, as a program: a Dispatcher with a concurrency limit,
// then when_all, when_any and as_completed over handles.
#include <chrono>
#include <cstdio>
#include <strand/strand.hpp>
#include <vector>

using namespace std::chrono_literals;

int square(int x) {
  return x * x;
}

int main() {
  strand::Dispatcher<int> d({.max_concurrency = 4});
  auto id = d.dispatch(square, 3);  // starts now, or when one of 4 slots frees
  d.enqueue(square, 4);             // starts at run()
  const bool finished = d.run(5s);  // false if not all finished in time
  std::printf("dispatcher: finished=%s, task %zu -> %d, %zu results, complete=%s\n",
              finished ? "true" : "false", id, d.results().at(id), d.results().size(),
              d.complete() ? "true" : "false");

  auto task = strand::as_task(strand::pool, square);
  std::vector<strand::Handle<int>> handles;
  for (int i = 1; i <= 5; ++i) handles.push_back(task(i));

  std::vector<int> all = strand::when_all(handles).get();  // in input order
  std::printf("when_all:");
  for (int v : all) std::printf(" %d", v);
  std::printf("\n");

  std::size_t first = strand::when_any(handles).get();  // index of the first to finish
  std::printf("when_any: index %s\n", first < handles.size() ? "in range" : "out of range");

  int sum = 0;
  for (const auto& h : strand::as_completed(handles)) sum += h.get();  // in finishing order
  std::printf("as_completed: sum %d\n", sum);
}
