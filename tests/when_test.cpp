#include "strand/when.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <thread>
#include <vector>

#include "strand/thread_pool.hpp"
#include "support.hpp"

namespace strand {
namespace {

using namespace std::chrono_literals;

TEST(WhenAll, CollectsValuesInInputOrder) {
  std::vector<Promise<int>> ps(3);
  std::vector<Handle<int>> hs;
  for (auto& p : ps) hs.push_back(p.handle());
  Handle<std::vector<int>> all = when_all(hs);
  ps[2].set_value(30);
  ps[0].set_value(10);
  EXPECT_FALSE(all.ready());
  ps[1].set_value(20);
  EXPECT_EQ(all.get(), (std::vector<int>{10, 20, 30}));
}

TEST(WhenAll, FailsLikeTheFirstFailedInputInInputOrder) {
  Promise<int> a;
  Promise<int> b;
  Promise<int> c;
  Handle<std::vector<int>> all = when_all({a.handle(), b.handle(), c.handle()});
  c.set_exception(std::make_exception_ptr(std::runtime_error("c broke")));
  b.set_exception(std::make_exception_ptr(std::logic_error("b broke")));
  a.set_value(1);
  try {
    all.get();
    FAIL() << "when_all must fail";
  } catch (const std::logic_error& e) {
    EXPECT_STREQ(e.what(), "b broke");
  }
}

TEST(WhenAll, ACancelledInputCancelsTheWhole) {
  Promise<> a;
  Promise<> b;
  Handle<void> all = when_all({a.handle(), b.handle()});
  a.handle().cancel();
  b.set_value();
  EXPECT_THROW(all.get(), Cancelled);
}

TEST(WhenAll, EmptyInputCompletesAtOnce) {
  EXPECT_TRUE(when_all(std::vector<Handle<int>>{}).get().empty());
  EXPECT_EQ(when_all(std::vector<Handle<void>>{}).status(), Status::completed);
}

TEST(WhenAll, OverPoolTasks) {
  ThreadPool pool(2);
  std::vector<Handle<int>> hs;
  for (int i = 0; i < 100; ++i) hs.push_back(pool.submit([i] { return i; }));
  const auto values = when_all(hs).get(5s);
  ASSERT_EQ(values.size(), 100U);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(values[static_cast<std::size_t>(i)], i);
}

TEST(WhenAll, AnEmptyHandleIsRefused) {
  EXPECT_THROW((void)when_all({Handle<int>()}), InvalidHandle);
}

TEST(WhenAny, GivesTheIndexOfTheFirstToFinish) {
  std::vector<Promise<int>> ps(3);
  std::vector<Handle<int>> hs;
  for (auto& p : ps) hs.push_back(p.handle());
  Handle<std::size_t> first = when_any(hs);
  EXPECT_FALSE(first.ready());
  ps[1].set_exception(std::make_exception_ptr(std::runtime_error("failing counts as finishing")));
  ps[0].set_value(1);
  EXPECT_EQ(first.get(), 1U);
}

TEST(WhenAny, EmptyInputIsAnError) {
  try {
    (void)when_any(std::vector<Handle<int>>{});
    FAIL() << "when_any of nothing must throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "strand::when_any: no handles to wait for");
  }
}

TEST(AsCompleted, YieldsInFinishingOrder) {
  std::vector<Promise<int>> ps(3);
  std::vector<Handle<int>> hs;
  for (auto& p : ps) hs.push_back(p.handle());
  testing::Gate first_seen;
  testing::Gate second_seen;
  // Each input finishes only after the loop has taken the one before, so the order is certain.
  std::thread producer([&] {
    ps[2].set_value(2);
    first_seen.wait();
    ps[0].set_value(0);
    second_seen.wait();
    ps[1].set_value(1);
  });
  std::vector<int> order;
  for (const Handle<int>& h : as_completed(hs)) {
    order.push_back(h.get());
    if (order.size() == 1) first_seen.open();
    if (order.size() == 2) second_seen.open();
  }
  producer.join();
  EXPECT_EQ(order, (std::vector<int>{2, 0, 1}));
}

TEST(AsCompleted, InputsAlreadyFinishedComeFirstInInputOrder) {
  std::vector<Promise<int>> ps(3);
  std::vector<Handle<int>> hs;
  for (auto& p : ps) hs.push_back(p.handle());
  ps[2].set_value(2);
  ps[0].set_value(0);
  auto completed = as_completed(hs);
  auto it = completed.begin();
  EXPECT_EQ(it->get(), 0);
  ++it;
  EXPECT_EQ(it->get(), 2);
  ps[1].set_value(1);
  ++it;
  EXPECT_EQ(it->get(), 1);
}

TEST(AsCompleted, WaitsForTasksStillRunning) {
  ThreadPool pool(2);
  std::vector<Handle<int>> hs;
  for (int i = 0; i < 50; ++i) hs.push_back(pool.submit([i] { return i; }));
  int sum = 0;
  int n = 0;
  for (const Handle<int>& h : as_completed(hs, 5s)) {
    sum += h.get();
    ++n;
  }
  EXPECT_EQ(n, 50);
  EXPECT_EQ(sum, 49 * 50 / 2);
}

TEST(AsCompleted, TimesOutWhenNothingMoreFinishes) {
  Promise<int> done;
  Promise<int> never;
  done.set_value(1);
  int seen = 0;
  try {
    for (const Handle<int>& h : as_completed(std::vector{done.handle(), never.handle()}, 20ms)) {
      seen += h.get();
    }
    FAIL() << "iteration must time out";
  } catch (const Timeout& e) {
    EXPECT_STREQ(e.what(), "strand: timed out after 20ms waiting for a task");
  }
  EXPECT_EQ(seen, 1);
}

}  // namespace
}  // namespace strand
