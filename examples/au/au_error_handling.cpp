// au's error handling: a failure comes back as the exception the function threw.
#include <cstdio>
#include <stdexcept>
#include <strand/strand.hpp>

using namespace std::chrono_literals;

int main() {
  auto temp = strand::temporary_async_compute();
  auto may_fail = temp([](int x) {
    if (x < 0) throw std::invalid_argument("x must be positive");
    return x * x;
  });
  auto handle = may_fail(-5);
  try {
    (void)handle.get_result(5s);
  } catch (const std::invalid_argument& e) {
    std::printf("Computation failed: %s\n", e.what());
    std::printf("Status: %s\n", std::string(strand::to_string(handle.status())).c_str());
  }
  return 0;
}
