#include "strand/handle.hpp"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include "strand/promise.hpp"
#include "strand/thread_pool.hpp"
#include "support.hpp"

namespace strand {
namespace {

using namespace std::chrono_literals;
using testing::Gate;
using testing::ReportCapture;

struct QuotaExceeded : std::runtime_error {
  using std::runtime_error::runtime_error;
  int over_by = 3;
};

// A task on `pool` that blocks until `gate` opens, then returns `value`.
Handle<int> gated(ThreadPool& pool, Gate gate, int value) {
  return pool.submit([gate, value] {
    gate.wait();
    return value;
  });
}

TEST(Handle, EmptyHandleSaysSo) {
  Handle<int> h;
  EXPECT_FALSE(h.valid());
  try {
    (void)h.status();
    FAIL() << "status() on an empty handle must throw";
  } catch (const InvalidHandle& e) {
    EXPECT_STREQ(e.what(), "strand: operation on an empty strand::Handle");
  }
  EXPECT_THROW(h.get(), InvalidHandle);
  EXPECT_THROW(h.cancel(), InvalidHandle);
}

TEST(Handle, GetReturnsTheValue) {
  ThreadPool pool(2);
  Handle<std::string> h = pool.submit([] { return std::string("forty-two"); });
  EXPECT_EQ(h.get(), "forty-two");
  EXPECT_EQ(h.status(), Status::completed);
  EXPECT_TRUE(h.ready());
}

TEST(Handle, GetRethrowsTheTasksOwnExceptionTypeAndMessage) {
  ThreadPool pool(1);
  Handle<int> std_error = pool.submit([]() -> int { throw std::out_of_range("index 7 of 3"); });
  try {
    std_error.get();
    FAIL() << "get() must rethrow";
  } catch (const std::out_of_range& e) {
    EXPECT_STREQ(e.what(), "index 7 of 3");
  }
  EXPECT_EQ(std_error.status(), Status::failed);

  Handle<void> custom = pool.submit([] { throw QuotaExceeded("over quota"); });
  try {
    custom.get();
    FAIL() << "get() must rethrow";
  } catch (const QuotaExceeded& e) {  // the very type, not a wrapper
    EXPECT_STREQ(e.what(), "over quota");
    EXPECT_EQ(e.over_by, 3);
  }
  // Every get() rethrows, not just the first.
  EXPECT_THROW(custom.get(), QuotaExceeded);
  EXPECT_NE(custom.exception(), nullptr);
}

TEST(Handle, GetWithTimeoutThrowsTimeoutOnASlowTask) {
  ThreadPool pool(1);
  Gate gate;
  Handle<int> slow = gated(pool, gate, 5);
  try {
    slow.get(10ms);
    FAIL() << "get(10ms) must time out";
  } catch (const Timeout& e) {
    EXPECT_STREQ(e.what(), "strand: timed out after 10ms waiting for a task");
  }
  EXPECT_FALSE(slow.ready());
  gate.open();
  EXPECT_EQ(slow.get(5s), 5);  // a timeout changes nothing about the task
}

TEST(Handle, TryGetNeverBlocks) {
  ThreadPool pool(1);
  Gate gate;
  Handle<int> h = gated(pool, gate, 9);
  EXPECT_EQ(h.try_get(), std::nullopt);
  gate.open();
  h.wait();
  EXPECT_EQ(h.try_get(), 9);

  Handle<void> v = pool.submit([] {});
  v.wait();
  EXPECT_TRUE(v.try_get());
  Handle<int> bad = pool.submit([]() -> int { throw std::logic_error("no"); });
  bad.wait();
  EXPECT_THROW((void)bad.try_get(), std::logic_error);
}

TEST(Handle, WaitForAndWaitUntilReportWhetherItFinished) {
  ThreadPool pool(1);
  Gate gate;
  Handle<int> h = gated(pool, gate, 1);
  EXPECT_FALSE(h.wait_for(5ms));
  EXPECT_FALSE(h.wait_until(std::chrono::system_clock::now() + 5ms));
  gate.open();
  EXPECT_TRUE(h.wait_for(5s));
  EXPECT_TRUE(h.wait_until(std::chrono::steady_clock::now() + 5s));
}

TEST(Handle, CancelQueuedTaskMeansItNeverStarts) {
  ThreadPool pool(1);
  Gate gate;
  Handle<int> blocker = gated(pool, gate, 0);
  std::atomic<bool> ran{false};
  Handle<void> queued = pool.submit([&ran] { ran = true; });
  EXPECT_EQ(queued.status(), Status::queued);
  EXPECT_TRUE(queued.cancel());
  EXPECT_EQ(queued.status(), Status::cancelled);
  EXPECT_TRUE(queued.cancel());  // idempotent
  gate.open();
  blocker.get();
  pool.shutdown();  // drains: had the cancelled task run, `ran` would be set by now
  EXPECT_FALSE(ran);
  try {
    queued.get();
    FAIL() << "get() on a cancelled task must throw";
  } catch (const Cancelled& e) {
    EXPECT_STREQ(e.what(), "strand: the task was cancelled");
  }
}

TEST(Handle, CancelRunningTaskRequestsItsStopToken) {
  ThreadPool pool(1);
  Gate started;
  Gate saw_stop;
  Handle<int> h = pool.submit([&](std::stop_token stop) {
    started.open();
    testing::sleep_until_stopped(stop);
    saw_stop.open();
    return 1;
  });
  ASSERT_TRUE(started.wait_for(5s));
  EXPECT_EQ(h.status(), Status::running);
  EXPECT_TRUE(h.cancel());
  EXPECT_EQ(h.status(), Status::cancelled);  // at once, whatever the function does next
  EXPECT_TRUE(saw_stop.wait_for(5s));
  EXPECT_THROW(h.get(), Cancelled);
}

TEST(Handle, CancelOnACompletedTaskIsFalseAndKeepsTheResult) {
  ThreadPool pool(1);
  Handle<std::vector<int>> h = pool.submit([] { return std::vector<int>{1, 2, 3}; });
  h.wait();
  EXPECT_FALSE(h.cancel());
  EXPECT_EQ(h.status(), Status::completed);
  EXPECT_EQ(h.get(), (std::vector<int>{1, 2, 3}));
}

TEST(Handle, CancelOnAFailedTaskIsFalseAndKeepsTheError) {
  ThreadPool pool(1);
  Handle<int> h = pool.submit([]() -> int { throw std::runtime_error("broke"); });
  h.wait();
  EXPECT_FALSE(h.cancel());
  EXPECT_EQ(h.status(), Status::failed);
  EXPECT_THROW(h.get(), std::runtime_error);
}

TEST(Handle, CopiesWatchTheSameTask) {
  Promise<int> p;
  Handle<int> a = p.handle();
  Handle<int> b = a;
  EXPECT_TRUE(a == b);
  p.set_value(7);
  EXPECT_EQ(b.get(), 7);
  EXPECT_EQ(&a.get(), &b.get());
}

TEST(Handle, ManyThreadsWaitingAllWake) {
  Promise<int> p;
  Handle<int> h = p.handle();
  std::atomic<int> total{0};
  std::vector<std::thread> waiters;
  for (int i = 0; i < 8; ++i) waiters.emplace_back([h, &total] { total += h.get(); });
  p.set_value(5);
  for (auto& t : waiters) t.join();
  EXPECT_EQ(total, 40);
}

TEST(Handle, ThenChainsOnTheValue) {
  ThreadPool pool(2);
  Handle<int> h = pool.submit([] { return 20; });
  Handle<std::string> s =
      h.then([](int v) { return v + 1; }).then([](int v) { return std::to_string(v * 2); });
  EXPECT_EQ(s.get(5s), "42");
  Handle<void> v = pool.submit([] {});
  EXPECT_EQ(v.then([] { return 3; }).get(5s), 3);
}

TEST(Handle, ThenSkipsTheContinuationWhenTheTaskFailed) {
  Promise<int> p;
  std::atomic<bool> called{false};
  Handle<int> next = p.handle().then([&](int v) {
    called = true;
    return v;
  });
  EXPECT_EQ(next.status(), Status::pending);
  p.set_exception(std::make_exception_ptr(std::domain_error("upstream")));
  EXPECT_THROW(next.get(), std::domain_error);
  EXPECT_FALSE(called);

  Promise<int> q;
  Handle<int> after_cancel = q.handle().then([](int v) { return v; });
  q.handle().cancel();
  EXPECT_THROW(after_cancel.get(), Cancelled);
}

TEST(Handle, ThenCarriesTheContinuationsOwnException) {
  Promise<int> p;
  Handle<int> next = p.handle().then([](int) -> int { throw std::length_error("too long"); });
  p.set_value(1);
  EXPECT_THROW(next.get(), std::length_error);
}

TEST(Handle, ThenOnAnExecutorRunsThere) {
  ThreadPool pool(1);
  Promise<int> p;
  Handle<bool> on_pool = p.handle().then(pool, [&pool](int) { return pool.is_worker_thread(); });
  p.set_value(1);
  EXPECT_TRUE(on_pool.get(5s));
}

TEST(Handle, ThenOnAShutDownExecutorFailsTheContinuation) {
  ThreadPool pool(1);
  pool.shutdown();
  Promise<int> p;
  Handle<int> next = p.handle().then(pool, [](int v) { return v; });
  p.set_value(1);
  EXPECT_THROW(next.get(), ExecutorShutDown);
}

TEST(Handle, ThenOnAnExecutorThatDropsTheWorkIsCancelled) {
  ThreadPool pool(1);
  testing::occupy_until_cancelled(pool);
  Promise<int> p;
  Handle<int> next = p.handle().then(pool, [](int v) { return v; });
  p.set_value(1);  // the continuation is queued behind the busy worker
  pool.shutdown(ShutdownMode::cancel);
  EXPECT_EQ(next.status(), Status::cancelled);
  EXPECT_THROW(next.get(), Cancelled);
}

TEST(Handle, OnCompleteRunsOnceFinishedOrAtOnce) {
  Promise<int> p;
  Handle<int> h = p.handle();
  std::vector<Status> seen;
  h.on_complete([&](const Handle<int>& done) { seen.push_back(done.status()); });
  h.on_complete([&] { seen.push_back(Status::pending); });
  EXPECT_TRUE(seen.empty());
  p.set_value(1);
  EXPECT_EQ(seen, (std::vector<Status>{Status::completed, Status::pending}));  // in order added
  h.on_complete([&](const Handle<int>& done) { seen.push_back(done.status()); });
  EXPECT_EQ(seen.size(), 3U);
}

TEST(Handle, ACallbackThatThrowsIsReportedAndThePoolKeepsWorking) {
  ReportCapture capture;
  ThreadPool pool(1);
  Handle<int> h = pool.submit([] { return 1; });
  h.on_complete([] { throw std::runtime_error("callback boom"); });
  h.wait();
  ASSERT_TRUE(capture.wait_for_count(1));
  const auto reports = capture.reports();
  EXPECT_EQ(reports[0].where, "strand: a completion callback threw");
  EXPECT_EQ(reports[0].description, "std::runtime_error: callback boom");
  EXPECT_EQ(h.get(), 1);  // the task's own result is untouched
  EXPECT_EQ(pool.submit([] { return 2; }).get(5s), 2);
}

TEST(Handle, OutlivesThePoolThatRanIt) {
  Handle<int> h;
  {
    ThreadPool pool(1);
    h = pool.submit([] { return 11; });
  }
  EXPECT_EQ(h.get(), 11);
}

TEST(Handle, WaitingSleepsInsteadOfSpinning) {
  Promise<int> p;
  Handle<int> h = p.handle();
  rusage before{};
  rusage after{};
  getrusage(RUSAGE_THREAD, &before);
  EXPECT_FALSE(h.wait_for(300ms));
  getrusage(RUSAGE_THREAD, &after);
  const auto cpu_us = [](const rusage& r) {
    return (r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1'000'000L + r.ru_utime.tv_usec +
           r.ru_stime.tv_usec;
  };
  EXPECT_LT(cpu_us(after) - cpu_us(before), 30'000) << "a 300 ms wait burned CPU";
}

}  // namespace
}  // namespace strand
