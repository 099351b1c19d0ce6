// The seed's TaskQueue example 3, as a program: with run_dependent_tasks, the queue pulls in the
// dependents of the tasks that complete.
#include <iostream>
#include <strand/strand.hpp>

int main() {
  auto t1 = strand::Task::make("t1", [] { std::cout << "t1\n"; });
  auto t2 = t1->then("t2", [] { std::cout << "t2\n"; });
  strand::TaskQueue q({t1}, /*run_dependent_tasks=*/true);
  for (const auto& done : q.run()) (void)done;
}
