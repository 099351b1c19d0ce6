// `strand demo`: the main job, a short tour that runs on the embedded defaults.
#pragma once

#include <iosfwd>
#include <string>

namespace strand::cli {

struct DemoOptions {
  long total = 1'000'000;  // size of the seed's long_blocking_function range
  long chunk = 100'000;    // chunk size it yields
  int tasks = 200;         // pool tasks in the batch
  std::string store;       // where the computations go; empty: default_store_url()
};

// Returns the process exit code.
int run_demo(const DemoOptions& options, std::ostream& out);

}  // namespace strand::cli
