#include "strand/dot.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>

namespace strand {
namespace {

TEST(Dot, DrawsTasksWithTheirStatesAndEdges) {
  auto t1 = Task::make("t1", [] {});
  auto t2 = t1->then("t2", [] {});
  auto t3 = Task::make("say \"hi\"", [] { throw 1; });
  t2->require(t3);
  t1->run();
  t3->run();
  EXPECT_EQ(to_dot({t2}),
            "digraph tasks {\n"
            "  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\"];\n"
            "  n0 [label=\"t2\\nPENDING\", fillcolor=\"white\"];\n"
            "  n1 [label=\"t1\\nDONE\", fillcolor=\"palegreen\"];\n"
            "  n2 [label=\"say \\\"hi\\\"\\nFAILED\", fillcolor=\"salmon\"];\n"
            "  n1 -> n0;\n"
            "  n2 -> n0;\n"
            "}\n");
}

TEST(Dot, EachTaskOnceEvenIfRequestedTwice) {
  auto t1 = Task::make("t1");
  EXPECT_EQ(to_dot({t1, t1}),
            "digraph tasks {\n"
            "  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\"];\n"
            "  n0 [label=\"t1\\nPENDING\", fillcolor=\"white\"];\n"
            "}\n");
}

TEST(Dot, ColoursByState) {
  EXPECT_EQ(dot_colour(TaskState::running), "gold");
  EXPECT_EQ(dot_colour(TaskState::cancelled), "lightgrey");
  EXPECT_EQ(dot_colour(TaskState::queued), "lightblue");
}

// to_dot() walks the graph while another thread adds prerequisites to the task it starts from:
// the walk marks that task first, so those require()s take the graph mutex and the walk never
// reads a list being changed (ThreadSanitizer checks that part). Each picture has at least as
// many edges as the one before, and the last has them all.
TEST(Dot, ToDotWhileAnotherThreadAddsPrerequisitesToItsRoot) {
  constexpr int kPrerequisites = 200;
  auto root = Task::make("root");
  std::atomic<bool> added{false};
  std::thread adder([&] {
    for (int i = 0; i < kPrerequisites; ++i) root->require(Task::make("p"));
    added = true;
  });
  const auto edges_in = [](const std::string& dot) {
    std::size_t n = 0;
    for (auto at = dot.find("->"); at != std::string::npos; at = dot.find("->", at + 2)) ++n;
    return n;
  };
  std::size_t last = 0;
  while (!added.load()) {
    const std::size_t now = edges_in(to_dot({root}));
    ASSERT_GE(now, last);
    last = now;
  }
  adder.join();
  EXPECT_EQ(edges_in(to_dot({root})), static_cast<std::size_t>(kPrerequisites));
}

TEST(Svg, GraphvizDrawsTheGraph) {
  auto t1 = Task::make("first", [] {});
  auto t2 = t1->then("second", [] {});
  t1->run();
  const std::string svg = to_svg({t2});
  EXPECT_NE(svg.find("<svg"), std::string::npos);
  EXPECT_NE(svg.find("first"), std::string::npos);
  EXPECT_NE(svg.find("palegreen"), std::string::npos);
}

TEST(Svg, AMissingDotProgramIsAClearError) {
  auto t1 = Task::make("t1");
  try {
    (void)to_svg({t1}, {.dot_program = "strand-no-such-dot"});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(),
                 "strand: to_svg needs Graphviz's \"strand-no-such-dot\" program, which is not "
                 "on PATH (Debian: apt-get install graphviz)");
  }
}

TEST(Svg, AFailingDotProgramReportsIt) {
  auto t1 = Task::make("t1");
  try {
    (void)to_svg({t1}, {.dot_program = "false"});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("-Tsvg failed"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace strand
