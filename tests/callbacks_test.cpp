#include "strand/callbacks.hpp"

#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "strand/generator.hpp"
#include "strand/runner.hpp"
#include "support.hpp"

namespace strand {
namespace {

using namespace std::chrono_literals;
using testing::ReportCapture;

TEST(OnIter, SeesEveryElementOfARangeInOrder) {
  std::vector<int> seen;
  auto runner = ThreadTaskrunner([](int n) { return std::vector<int>(n, 7); },
                                 on_iter([&seen](int x) { seen.push_back(x); }));
  Handle<void> h = runner(3);  // with on_iter the elements go to the callback, not the handle
  h.get();
  EXPECT_EQ(seen, (std::vector<int>{7, 7, 7}));
}

// The generator waits for on_iter to have seen each element before it makes the next one: this
// only finishes if on_iter is called while the function is still producing.
TEST(OnIter, IsCalledAsElementsAreProduced) {
  std::mutex m;
  std::condition_variable cv;
  int acknowledged = 0;
  auto produce = [&](int n) -> Generator<int> {
    for (int i = 1; i <= n; ++i) {
      co_yield i;
      std::unique_lock lock(m);
      if (!cv.wait_for(lock, 5s, [&] { return acknowledged >= i; })) {
        throw std::runtime_error("on_iter did not see element " + std::to_string(i) + " in time");
      }
    }
  };
  auto runner = ThreadTaskrunner(produce, on_iter([&](int x) {
                                   std::lock_guard lock(m);
                                   acknowledged = x;
                                   cv.notify_all();
                                 }));
  EXPECT_NO_THROW(runner(4).get(8s));
  EXPECT_EQ(acknowledged, 4);
}

TEST(OnIter, AnExceptionInTheCallbackFailsTheTask) {
  auto runner = Taskrunner(
      [] {
        return std::vector<int>{1, 2, 3};
      },
      on_iter([](int x) {
        if (x == 2) throw std::overflow_error("two");
      }));
  Handle<void> h = runner();
  EXPECT_EQ(h.status(), Status::failed);
  EXPECT_THROW(h.get(), std::overflow_error);
}

TEST(OnEnd, GetsTheResultBeforeTheHandleCompletes) {
  std::atomic<int> ended{0};
  auto runner = PoolTaskrunner([](int x) { return x * x; }, on_end([&ended](int v) { ended = v; }));
  EXPECT_EQ(runner(9).get(), 81);
  EXPECT_EQ(ended, 81);  // no race: on_end ran before the handle completed
}

TEST(OnEnd, TakesNothingForVoidOrWhenItWantsNothing) {
  int calls = 0;
  Taskrunner([] {}, on_end([&calls] { ++calls; }))().get();
  Taskrunner([] { return 5; }, on_end([&calls] { ++calls; }))().get();
  Taskrunner([] { return std::vector<int>{1}; }, on_iter([](int) {}),
             on_end([&calls] { ++calls; }))()
      .get();
  EXPECT_EQ(calls, 3);
}

TEST(OnError, IsCalledWithTheExceptionAndTheHandleStillFails) {
  std::string seen;
  auto runner = ThreadTaskrunner([]() -> int { throw std::invalid_argument("bad input"); },
                                 on_error([&seen](const std::exception& e) { seen = e.what(); }));
  Handle<int> h = runner();
  EXPECT_THROW(h.get(), std::invalid_argument);
  EXPECT_EQ(seen, "bad input");
  EXPECT_EQ(h.status(), Status::failed);
}

TEST(OnError, MayTakeTheExceptionPointer) {
  std::exception_ptr seen;
  auto runner = Taskrunner([] { throw 17; }, on_error([&seen](std::exception_ptr e) { seen = e; }));
  runner().wait();
  ASSERT_NE(seen, nullptr);
  EXPECT_THROW(std::rethrow_exception(seen), int);
}

TEST(OnError, NotCalledOnSuccess) {
  bool called = false;
  Taskrunner([] { return 1; }, on_error([&called](std::exception_ptr) { called = true; }))().get();
  EXPECT_FALSE(called);
}

TEST(OnError, ACallbackThatThrowsIsReported) {
  ReportCapture capture;
  auto runner = Taskrunner([] { throw std::runtime_error("task"); },
                           on_error([](std::exception_ptr) { throw std::logic_error("cb"); }));
  Handle<void> h = runner();
  EXPECT_THROW(h.get(), std::runtime_error);  // the task's error, not the callback's
  ASSERT_EQ(capture.reports().size(), 1U);
  EXPECT_EQ(capture.reports()[0].where, "strand: an on_error callback threw");
  EXPECT_EQ(capture.reports()[0].description, "std::logic_error: cb");
}

TEST(Options, AreRecognisedByType) {
  static_assert(detail::is_option_v<OnIter<int (*)(int)>>);
  static_assert(detail::is_option_v<const OnEnd<void (*)()>&>);
  static_assert(detail::is_option_v<UsePool>);
  static_assert(!detail::is_option_v<int>);
  static_assert(!detail::is_option_v<std::string>);
  ThreadPool pool(1);
  EXPECT_EQ(use_pool(pool).pool, &pool);
}

}  // namespace
}  // namespace strand
