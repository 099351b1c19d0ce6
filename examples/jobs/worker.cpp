// A worker program: runs the jobs of a store (an SQLite file, or Redis) until SIGTERM or SIGINT.
//
//   example_jobs_worker sqlite:///tmp/jobs.db
//   example_jobs_worker redis://127.0.0.1:6379/0
#include <iostream>

#include "strand/strand.hpp"
#include "tasks.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: example_jobs_worker STORE_URL\n";
    return 2;
  }
  strand::Registry registry;
  tasks::register_all(registry);
  strand::Worker worker(strand::open_store(argv[1]), registry, {.concurrency = 4});
  std::cout << "worker " << worker.name() << " ready" << std::endl;
  const int signo = worker.run_until_signal();  // then a graceful stop
  std::cout << "worker stopped by signal " << signo << " after " << worker.stats().completed
            << " jobs" << std::endl;
}
