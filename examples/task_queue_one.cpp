// The seed's TaskQueue example 2, as a program: only the queued task runs, not its dependent.
#include <iostream>
#include <strand/strand.hpp>

int main() {
  auto t1 = strand::Task::make("t1", [] { std::cout << "t1\n"; });
  auto t2 = t1->then("t2", [] { std::cout << "t2\n"; });
  strand::TaskQueue q({t1});
  for (const auto& done : q.run()) (void)done;
  std::cout << "t2 is " << t2->state() << "\n";
}
