// A producer program: writes calls into a store by name and waits for their results, which a
// worker program (example_jobs_worker) computes, possibly on another machine.
//
//   example_jobs_producer sqlite:///tmp/jobs.db
#include <iostream>
#include <tuple>
#include <vector>

#include "strand/strand.hpp"

int main(int argc, char** argv) {
  using namespace std::chrono_literals;
  if (argc != 2) {
    std::cerr << "usage: example_jobs_producer STORE_URL\n";
    return 2;
  }
  auto store = strand::open_store(argv[1]);

  // One call, one job: the handle waits for the worker's result.
  strand::StoreTaskWriter<int> word_count(store, "word_count");
  auto words = word_count("the quick brown fox jumps over the lazy dog");

  // A hundred calls written in one transaction (or one round trip to Redis).
  strand::StoreTaskWriter<long> square(store, "square", {.priority = 1});
  std::vector<std::tuple<long>> calls;
  for (long i = 0; i < 100; ++i) calls.emplace_back(i);
  // get_results waits for them all and reads the finished ones in one batch (one round trip).
  long sum = 0;
  for (const long v : strand::get_results(square.map(calls), 30s)) sum += v;

  std::cout << "word_count: " << words.get_result(30s) << "\n";
  std::cout << "sum of squares 0..99: " << sum << "\n";

  // A name no worker knows: the job fails with the reason, and the workers carry on.
  strand::StoreTaskWriter<int> unknown(store, "resize");
  try {
    (void)unknown("a.png").get_result(30s);
  } catch (const std::exception& e) {
    std::cout << "resize: " << e.what() << "\n";
  }
}
