#include "graph_demo.hpp"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <stdexcept>
#include <string>
#include <thread>

#include "strand/strand.hpp"

namespace strand::cli {

void run_graph_demo(std::ostream& out) {
  using namespace std::chrono_literals;
  out << "== 4. A task graph (cs.taskqueue): make() on the pool, then drawn by Graphviz ==\n";
  // fetch a and b in parallel, merge them, then report; `lint` fails and blocks `publish`.
  auto fetch_a = Task::make("fetch a", [] {
    std::this_thread::sleep_for(5ms);
    return 20;
  });
  auto fetch_b = Task::make("fetch b", [] {
    std::this_thread::sleep_for(5ms);
    return 22;
  });
  auto merge = Task::make(
      "merge", [fetch_a, fetch_b] { return fetch_a->result<int>() + fetch_b->result<int>(); });
  merge->require(fetch_a).require(fetch_b);
  auto report =
      merge->then("report", [merge] { return "answer " + std::to_string(merge->result<int>()); });
  auto lint = Task::make("lint", []() -> int { throw std::runtime_error("style check failed"); });
  auto publish = report->then("publish", [] {});
  publish->require(lint);

  ThreadPool pool(2);
  for (const TaskPtr& done : make({report, publish}, {.executor = &pool})) {
    out << "  " << done->name() << ": " << done->state();
    if (done->state() == TaskState::done && done->name() == "report") {
      out << " (" << done->result<std::string>() << ")";
    } else if (done->state() == TaskState::failed) {
      try {
        done->result();
      } catch (const std::exception& e) {
        out << " (" << e.what() << ")";
      }
    }
    out << "\n";
  }
  const auto path = std::filesystem::temp_directory_path() / "strand-demo-graph.svg";
  try {
    const std::string svg = to_svg({publish});
    std::ofstream(path) << svg;
    out << "  wrote the graph to " << path.string() << "\n";
  } catch (const Error& e) {
    out << "  no SVG: " << e.what() << "\n";
  }
}

}  // namespace strand::cli
