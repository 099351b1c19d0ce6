// `strand worker --store URL --plugin ./libtasks.so --concurrency 4`: runs a store's jobs with the
// functions of plugins until SIGTERM or SIGINT.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace strand::cli {

struct WorkerCommand {
  std::string store;                 // URL; empty means default_store_url()
  std::vector<std::string> plugins;  // shared libraries exporting strand_register
  int concurrency = 1;
  std::vector<std::string> queues{"default"};
  std::string isolation = "thread";  // or "process"
  double lease_seconds = 30;
  std::string name;  // default host:pid:n
};

// Returns the exit code: 0 after a signal and a graceful stop; 2 for a bad plugin or option; 3 for
// a store that cannot be opened.
int run_worker(const WorkerCommand& command, std::ostream& out, std::ostream& err);

}  // namespace strand::cli
