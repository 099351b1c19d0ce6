// The seed's TaskQueue example 1, as a program: two dependent tasks in a queue, run in order.
#include <iostream>
#include <strand/strand.hpp>

int main() {
  auto t1 = strand::Task::make("t1", [] { std::cout << "t1\n"; });
  auto t2 = t1->then("t2", [] { std::cout << "t2\n"; });
  strand::TaskQueue q({t1, t2});
  for (const auto& done : q.run()) (void)done;
}
