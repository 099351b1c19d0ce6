// strand/dot.hpp — a task graph as Graphviz DOT, or drawn as SVG by Graphviz's `dot`.
//
//   std::string dot = strand::to_dot({t2});   // t2, everything it requires, and the edges
//   std::string svg = strand::to_svg({t2});   // runs `dot -Tsvg` (Debian package: graphviz)
//
// Each task is a box labelled with its name and state, filled with its state's colour: PENDING
// white, QUEUED light blue, RUNNING gold, DONE green, FAILED salmon, CANCELLED grey. An edge runs
// from a prerequisite to the task that requires it.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "strand/task.hpp"

namespace strand {

// The fill colour of a state in to_dot's drawing (a Graphviz colour name).
[[nodiscard]] std::string_view dot_colour(TaskState state) noexcept;

// `tasks` and all their prerequisites, transitively, as a DOT digraph.
[[nodiscard]] std::string to_dot(const std::vector<TaskPtr>& tasks);

struct SvgOptions {
  std::string dot_program = "dot";  // a name looked up on PATH, or a path
};

// to_dot() drawn by Graphviz. Throws strand::Error if the program is not found
// (`strand: to_svg needs Graphviz's "dot" program, which is not on PATH (Debian: apt-get install
// graphviz)`) or if it fails (with what it wrote to stderr).
[[nodiscard]] std::string to_svg(const std::vector<TaskPtr>& tasks, const SvgOptions& options = {});

}  // namespace strand
