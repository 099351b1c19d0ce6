// The functions the job examples run. The worker registers them by name; the producer only names
// them. (The same functions are the example plugin, libstrand_example_tasks.so.)
#pragma once

#include <unistd.h>

#include <chrono>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

#include "strand/computation.hpp"
#include "strand/registry.hpp"

namespace tasks {

inline void register_all(strand::Registry& registry) {
  registry.add("square", [](long x) { return x * x; });
  registry.add("word_count", [](const std::string& text) {
    std::istringstream words(text);
    std::string word;
    int n = 0;
    while (words >> word) ++n;
    return n;
  });
  // A slow job that reports its progress and stops early when asked.
  registry.add("count_slowly", [](std::stop_token stop, int steps) {
    for (int i = 1; i <= steps && !stop.stop_requested(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      strand::report_progress(static_cast<double>(i) / steps, "step " + std::to_string(i));
    }
    return steps;
  });
  // Sleeps, then says which process ran it (the reliability tests use it).
  registry.add("sleep_then_pid", [](int ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return static_cast<int>(::getpid());
  });
  registry.add("always_fails", [](int attempt_hint) -> int {
    throw std::runtime_error("failing as asked (" + std::to_string(attempt_hint) + ")");
  });
}

}  // namespace tasks
