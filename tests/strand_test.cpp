// The umbrella header alone is enough for the whole API.
#include "strand/strand.hpp"

#include <gtest/gtest.h>

namespace {

TEST(Strand, UmbrellaHeaderOffersEveryLayerOfThisBuild) {
  auto task = strand::as_task(strand::pool, [](int x) { return x + 1; });
  strand::Handle<int> h = task(41);
  EXPECT_EQ(h.get(), 42);
  strand::Dispatcher<int> d;
  d.dispatch([] { return 1; });
  EXPECT_TRUE(d.run());
  EXPECT_EQ(strand::when_all(d.handles()).get(), std::vector<int>{1});
}

}  // namespace
