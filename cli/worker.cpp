#include "worker.hpp"

#include <chrono>
#include <ostream>

#include "jobs.hpp"
#include "strand/strand.hpp"

namespace strand::cli {

int run_worker(const WorkerCommand& command, std::ostream& out, std::ostream& err) {
  Registry registry;
  for (const std::string& plugin : command.plugins) {
    try {
      const auto added = load_plugin(plugin, registry);
      if (added.empty()) {
        err << "strand worker: plugin \"" << plugin << "\" registered no function\n";
        return 2;
      }
    } catch (const std::exception& e) {
      err << e.what() << "\n";
      return 2;
    }
  }
  if (registry.names().empty()) {
    err << "strand worker: no functions to run: give at least one --plugin\n";
    return 2;
  }
  if (command.isolation != "thread" && command.isolation != "process") {
    err << "strand worker: --isolation must be thread or process, not \"" << command.isolation
        << "\"\n";
    return 2;
  }
  const std::string url = command.store.empty() ? default_store_url() : command.store;
  std::shared_ptr<Store> store;
  try {
    store = open_store(url);
    (void)job_queue(store);
  } catch (const std::exception& e) {
    err << e.what() << "\n";
    return 3;
  }
  WorkerOptions options{
      .concurrency = static_cast<std::size_t>(command.concurrency),
      .queues = command.queues,
      .isolation = command.isolation == "process" ? Isolation::process : Isolation::thread,
      .lease = std::chrono::milliseconds(static_cast<long>(command.lease_seconds * 1000)),
      .name = command.name};
  try {
    Worker worker(store, registry, options);
    out << "strand worker " << worker.name() << ": " << url << ", queues";
    for (const auto& q : options.queues) out << " " << q;
    out << ", " << options.concurrency << " at once (" << command.isolation << "); functions:";
    for (const auto& name : registry.names()) out << " " << registry.signature(name);
    out << std::endl;
    const int signo = worker.run_until_signal();
    const auto stats = worker.stats();
    out << "strand worker " << worker.name() << ": stopped by signal " << signo << "; "
        << stats.completed << " completed, " << stats.failed << " failed, " << stats.released
        << " released, " << stats.fenced << " refused" << std::endl;
  } catch (const std::exception& e) {
    err << e.what() << "\n";
    return 2;
  }
  return 0;
}

}  // namespace strand::cli
