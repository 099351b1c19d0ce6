#include <iostream>
#include <strand/strand.hpp>

int main() {
  auto task = strand::as_task(strand::pool, [](int x) { return x * 2; });
  std::cout << "consumer says: " << task(21).get() << "\n";
}
