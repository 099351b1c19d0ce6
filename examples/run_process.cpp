// The seed's run_process examples: a worker process for the length of a scope, and not launching
// one when an outside check says it is already running.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <strand/strand.hpp>
#include <thread>

using namespace std::chrono_literals;

void my_worker() {
  std::printf("Worker started!\n");
  std::fflush(stdout);
  std::this_thread::sleep_for(5s);  // stopped long before this, at the end of the scope
  std::printf("Worker exiting!\n");
}

bool is_service_running() {
  return true;
}  // an outside check, e.g. a health endpoint

int main() {
  {
    auto proc = strand::run_process(my_worker, {.name = "my_worker", .is_ready = 200ms});
    std::printf("Process running: %s\n", proc.alive() ? "true" : "false");
    // Do work while the process is running
  }
  // After the scope, the process is stopped and reaped.
  std::printf("After the scope: cleaned up\n");

  {
    auto proc = strand::run_process(my_worker, {.process_already_running = is_service_running});
    if (!proc) {
      std::printf("Service was already running!\n");
    } else {
      std::printf("Launched new worker process!\n");
    }
  }

  // A command works the same way; a program that does not exist is an error at once.
  try {
    auto proc = strand::run_process({"no-such-server", "--port", "7001"});
  } catch (const strand::ProcessStartError& e) {
    std::printf("%s\n", e.what());
  }
  return 0;
}
