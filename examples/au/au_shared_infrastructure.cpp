// au's shared infrastructure: several functions on one store and backend, chained.
#include <cstdio>
#include <strand/strand.hpp>
#include <string>

using namespace std::chrono_literals;

int main() {
  auto store = strand::open_store(
      "sqlite://" + (std::filesystem::temp_directory_path() / "strand-shared.db").string(),
      {.ttl = 2h});
  const strand::ComputeOptions shared{.store = store, .backend = strand::Target::process};

  auto step1 = strand::async_compute([](std::string x) { return x + " preprocessed"; }, shared);
  auto step2 = strand::async_compute([](std::string x) { return x + ", transformed"; }, shared);

  auto h1 = step1(std::string("data"));
  const std::string preprocessed = h1.get_result(60s);
  auto h2 = step2(preprocessed);
  std::printf("final: %s\n", h2.get_result(60s).c_str());
  store->erase(h1.key());
  store->erase(h2.key());
  return 0;
}
