#include "strand/generator.hpp"

#include <gtest/gtest.h>

#include <ranges>
#include <stdexcept>
#include <string>
#include <vector>

namespace strand {
namespace {

static_assert(std::ranges::input_range<Generator<int>>);

Generator<int> count_to(int n, int* produced = nullptr) {
  for (int i = 1; i <= n; ++i) {
    if (produced != nullptr) *produced = i;
    co_yield i;
  }
}

TEST(Generator, YieldsInOrder) {
  std::vector<int> out;
  for (int x : count_to(4)) out.push_back(x);
  EXPECT_EQ(out, (std::vector<int>{1, 2, 3, 4}));
}

TEST(Generator, IsLazy) {
  int produced = 0;
  auto g = count_to(3, &produced);
  EXPECT_EQ(produced, 0);  // nothing runs before iteration
  auto it = g.begin();
  EXPECT_EQ(produced, 1);
  EXPECT_EQ(*it, 1);
  ++it;
  EXPECT_EQ(produced, 2);
}

TEST(Generator, EmptySequence) {
  int n = 0;
  for ([[maybe_unused]] int x : count_to(0)) ++n;
  EXPECT_EQ(n, 0);
}

Generator<std::string> fails_after_one() {
  co_yield std::string("one");
  throw std::runtime_error("generator broke");
}

TEST(Generator, AnExceptionInTheBodyReachesTheLoop) {
  std::vector<std::string> seen;
  try {
    for (const auto& s : fails_after_one()) seen.push_back(s);
    FAIL() << "the exception must propagate";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "generator broke");
  }
  EXPECT_EQ(seen, std::vector<std::string>{"one"});
}

TEST(Generator, DestroyedMidwayFreesTheFrame) {
  auto g = count_to(1000);
  auto it = g.begin();
  EXPECT_EQ(*it, 1);
}  // ASan checks the frame is freed

}  // namespace
}  // namespace strand
