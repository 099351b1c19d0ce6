// The seed's make() doctest, as a program: two tracked tasks, t2 requiring t1, made in order.
//
//   >>> t1 = Task('t1', lambda: print('doing t1'), track=True)
//   >>> t2 = t1.then('t2', lambda: print('doing t2'), track=True)
//   >>> list(make(t2))
#include <iostream>
#include <strand/strand.hpp>
#include <vector>

int main() {
  auto t1 = strand::Task::make("t1", [] { std::cout << "doing t1\n"; }, {.track = true});
  auto t2 = t1->then("t2", [] { std::cout << "doing t2\n"; }, {.track = true});
  // list(make(t2)): each task as it completes, collected
  std::vector<strand::TaskPtr> done;
  for (const strand::TaskPtr& task : strand::make({t2})) done.push_back(task);
  std::cout << "[";
  for (std::size_t i = 0; i < done.size(); ++i) std::cout << (i > 0 ? ", " : "") << *done[i];
  std::cout << "]\n";
}
