// au's quick start and basic usage: a function made an async computation with the defaults
// (a FileSystemStore in the temporary directory, the process backend).
#include <cstdio>
#include <strand/strand.hpp>

using namespace std::chrono_literals;

long expensive_computation(int n) {  // factorial
  long result = 1;
  for (int i = 1; i <= n; ++i) result *= i;
  return result;
}

int main() {
  auto computation = strand::async_compute(expensive_computation);
  auto handle = computation(20);  // returns immediately
  std::printf(
      "status after launch: %s\n",
      handle.status() == strand::Status::running || handle.is_ready() ? "running or done" : "?");
  const long result = handle.get_result(30s);  // blocks with a timeout
  std::printf("20! = %ld\n", result);

  auto my_function = strand::async_compute([](int x) { return x * 2; });
  std::printf("my_function(21) = %d\n", my_function(21).get_result(10s));
  return 0;
}
