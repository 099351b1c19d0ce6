// `strand demo`'s task graph part: a small graph made on the pool, then drawn as SVG.
#pragma once

#include <iosfwd>

namespace strand::cli {

// Prints what ran and the path of the SVG it wrote (or why it could not draw one).
void run_graph_demo(std::ostream& out);

}  // namespace strand::cli
