#include "strand/coro.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <stdexcept>
#include <string>

#include "strand/event_loop.hpp"

namespace strand {
namespace {

Coro<int> answer() {
  co_return 42;
}
Coro<int> twice() {
  co_return 2 * co_await answer();
}
Coro<void> fail(std::string why) {
  throw std::out_of_range(why);
  co_return;
}

TEST(Coro, IsLazy) {
  bool ran = false;
  auto body = [](bool& flag) -> Coro<void> {
    flag = true;
    co_return;
  };
  {
    Coro<void> c = body(ran);
    EXPECT_TRUE(c.valid());
    EXPECT_FALSE(c.done());
  }  // destroyed unstarted: its frame goes with it
  EXPECT_FALSE(ran);
}

TEST(Coro, AwaitsNestedCoroutines) {
  EXPECT_EQ(run(twice()), 84);
}

TEST(Coro, AnExceptionReachesWhoeverAwaits) {
  auto catcher = []() -> Coro<std::string> {
    try {
      co_await fail("index 7");
    } catch (const std::out_of_range& e) {
      co_return std::string("caught: ") + e.what();
    }
    co_return "nothing";
  };
  EXPECT_EQ(run(catcher()), "caught: index 7");
  try {
    run(fail("at the top"));
    FAIL() << "run must rethrow";
  } catch (const std::out_of_range& e) {
    EXPECT_STREQ(e.what(), "at the top");
  }
}

// Symmetric transfer keeps the stack flat through a tail call, which the sanitizers'
// instrumentation prevents (ThreadSanitizer's own record of the stack holds at most 65,536 frames
// besides): under them, a shorter chain.
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr int kChainDepth = 5'000;
#else
constexpr int kChainDepth = 100'000;
#endif

TEST(Coro, DeepChainsDoNotGrowTheStack) {
  struct Chain {
    static Coro<long> down(int n) {
      if (n == 0) co_return 0;
      co_return 1 + co_await down(n - 1);
    }
  };
  EXPECT_EQ(run(Chain::down(kChainDepth)), kChainDepth);
}

TEST(Coro, MoveOnlyResults) {
  auto make = []() -> Coro<std::unique_ptr<int>> {
    co_return std::make_unique<int>(5);
  };
  auto wrap = [make]() -> Coro<int> {
    co_return *(co_await make());
  };
  EXPECT_EQ(run(wrap()), 5);
}

TEST(Coro, AwaitingAnEmptyCoroIsALogicError) {
  auto body = []() -> Coro<void> {
    Coro<int> empty;
    (void)co_await std::move(empty);
  };
  EXPECT_THROW(run(body()), std::logic_error);
}

}  // namespace
}  // namespace strand
