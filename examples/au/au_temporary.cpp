// au's temporary computations: a store that exists for one scope.
#include <cstdio>
#include <filesystem>
#include <strand/strand.hpp>

using namespace std::chrono_literals;

int main() {
  std::filesystem::path dir;
  {
    auto async_func = strand::temporary_async_compute({.ttl = 60s});
    dir = async_func.path();
    auto quick_job = async_func([](int x) { return x * x; });
    auto handle = quick_job(10);
    std::printf("result: %d\n", handle.get_result(5s));
  }  // the temporary directory is removed here
  std::printf("directory removed: %s\n", std::filesystem::exists(dir) ? "no" : "yes");
  return 0;
}
