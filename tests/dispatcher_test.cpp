#include "strand/dispatcher.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <stdexcept>

#include "support.hpp"

namespace strand {
namespace {

using namespace std::chrono_literals;
using testing::Gate;

int square(int x) {
  return x * x;
}

TEST(Dispatcher, DispatchRunsAndCollectsResultsById) {
  Dispatcher<int> d;
  const auto a = d.dispatch(square, 3);
  const auto b = d.dispatch(square, 4);
  EXPECT_EQ(a, 0U);
  EXPECT_EQ(b, 1U);
  EXPECT_TRUE(d.run(5s));
  EXPECT_TRUE(d.complete());
  EXPECT_EQ(d.results(), (std::map<std::size_t, int>{{0, 9}, {1, 16}}));
  EXPECT_EQ(d.status(),
            (std::map<std::size_t, Status>{{0, Status::completed}, {1, Status::completed}}));
  EXPECT_TRUE(d.errors().empty());
}

TEST(Dispatcher, EnqueuedTasksStartOnlyAtRun) {
  Dispatcher<int> d;
  std::atomic<int> ran{0};
  d.enqueue([&ran] { return ++ran; });
  d.enqueue([&ran] { return ++ran; });
  EXPECT_EQ(ran, 0);
  EXPECT_FALSE(d.complete());
  EXPECT_EQ(d.status().at(0), Status::queued);
  EXPECT_TRUE(d.run(5s));
  EXPECT_EQ(ran, 2);
  EXPECT_TRUE(d.complete());
}

TEST(Dispatcher, ErrorsAndStatusSayWhichFailed) {
  Dispatcher<int> d;
  d.dispatch(square, 2);
  d.dispatch([]() -> int { throw std::domain_error("negative"); });
  d.run(5s);
  EXPECT_EQ(d.status().at(1), Status::failed);
  const auto errors = d.errors();
  ASSERT_EQ(errors.size(), 1U);
  EXPECT_THROW(std::rethrow_exception(errors.at(1)), std::domain_error);
  EXPECT_EQ(d.results(), (std::map<std::size_t, int>{{0, 4}}));
}

TEST(Dispatcher, RunReturnsFalseWhenTheTimeRunsOut) {
  Gate gate;
  Dispatcher<> d;
  d.dispatch([gate] { gate.wait(); });
  EXPECT_FALSE(d.run(20ms));
  EXPECT_FALSE(d.complete());
  gate.open();
  EXPECT_TRUE(d.run(5s));
}

TEST(Dispatcher, RespectsMaxConcurrency) {
  ThreadPool pool(4);
  Dispatcher<> d({.target = Target::pool, .pool = &pool, .max_concurrency = 2});
  Gate gate;
  std::mutex m;
  std::condition_variable cv;
  int running = 0;
  int most = 0;
  for (int i = 0; i < 6; ++i) {
    d.dispatch([&, gate] {
      {
        std::lock_guard lock(m);
        most = std::max(most, ++running);
        cv.notify_all();
      }
      gate.wait();
      std::lock_guard lock(m);
      --running;
    });
  }
  {
    std::unique_lock lock(m);
    ASSERT_TRUE(cv.wait_for(lock, 5s, [&] { return running == 2; }));
  }
  EXPECT_EQ(d.status().at(5), Status::queued);  // waits for a slot
  gate.open();
  EXPECT_TRUE(d.run(5s));
  EXPECT_EQ(most, 2);
}

TEST(Dispatcher, ResetCancelsWhatIsUnfinishedAndForgetsAll) {
  Gate gate;
  Dispatcher<int> d({.max_concurrency = 1});
  d.dispatch([gate] {
    gate.wait();
    return 1;
  });
  Handle<int> waiting = d.handle(d.dispatch(square, 5));
  d.enqueue(square, 6);
  d.reset();
  EXPECT_EQ(d.size(), 0U);
  EXPECT_EQ(waiting.status(), Status::cancelled);
  gate.open();
  EXPECT_EQ(d.dispatch(square, 7), 0U);  // ids start again
  EXPECT_TRUE(d.run(5s));
  EXPECT_EQ(d.results().at(0), 49);
}

TEST(Dispatcher, AnUnknownIdIsAClearError) {
  Dispatcher<int> d;
  try {
    (void)d.handle(3);
    FAIL() << "handle(3) of an empty dispatcher must throw";
  } catch (const std::out_of_range& e) {
    EXPECT_STREQ(e.what(), "strand::Dispatcher: no task with that id");
  }
}

TEST(Dispatcher, RunsOnThreadsOrSynchronouslyToo) {
  Dispatcher<std::thread::id> threads({.target = Target::thread});
  threads.dispatch([] { return std::this_thread::get_id(); });
  threads.run(5s);
  EXPECT_NE(threads.results().at(0), std::this_thread::get_id());

  Dispatcher<std::thread::id> inline_({.target = Target::sync});
  inline_.dispatch([] { return std::this_thread::get_id(); });
  EXPECT_TRUE(inline_.complete());  // already done when dispatch returned
  EXPECT_EQ(inline_.results().at(0), std::this_thread::get_id());
}

TEST(Dispatcher, TasksOnAShutDownPoolFailAndFreeTheirSlots) {
  ThreadPool pool(ThreadPool::Options{.threads = 1, .name = "closed pool"});
  pool.shutdown();
  Dispatcher<int> d({.target = Target::pool, .pool = &pool, .max_concurrency = 2});
  for (int i = 0; i < 3; ++i) d.enqueue(square, i);
  EXPECT_TRUE(d.run(5s));  // every task finished: none is stranded waiting for a slot
  for (const auto& [id, status] : d.status()) EXPECT_EQ(status, Status::failed) << id;
  EXPECT_THROW(std::rethrow_exception(d.errors().at(2)), ExecutorShutDown);
}

TEST(Dispatcher, TasksDroppedByACancellingShutdownReadCancelled) {
  ThreadPool pool(1);
  testing::occupy_until_cancelled(pool);
  Dispatcher<int> d({.target = Target::pool, .pool = &pool, .max_concurrency = 1});
  d.dispatch(square, 1);  // queued in the pool behind the busy worker
  d.dispatch(square, 2);  // waits for the dispatcher's single slot
  pool.shutdown(ShutdownMode::cancel);
  EXPECT_TRUE(d.run(5s));
  EXPECT_EQ(d.status().at(0), Status::cancelled);
  // The second starts when the first's slot frees: on the worker, where the cancelling pool
  // queues and then drops it, or elsewhere, where the closed pool refuses it.
  const Status second = d.status().at(1);
  if (second == Status::failed) {
    EXPECT_THROW(std::rethrow_exception(d.errors().at(1)), ExecutorShutDown);
  } else {
    EXPECT_EQ(second, Status::cancelled);
  }
}

TEST(Dispatcher, ManySynchronousTasksDoNotRecurse) {
  Dispatcher<int> d({.target = Target::sync, .max_concurrency = 1});
  for (int i = 0; i < 100'000; ++i) d.enqueue([] { return 1; });
  EXPECT_TRUE(d.run(8s));
  EXPECT_EQ(d.results().size(), 100'000U);
}

TEST(Dispatcher, TasksMayTakeAStopTokenThatCancelRequests) {
  Gate started;
  Dispatcher<int> d;
  const auto id = d.dispatch([started](std::stop_token stop) {
    started.open();
    testing::sleep_until_stopped(stop);
    return 0;
  });
  ASSERT_TRUE(started.wait_for(5s));
  EXPECT_TRUE(d.handle(id).cancel());
  EXPECT_TRUE(d.run(5s));
  EXPECT_EQ(d.status().at(id), Status::cancelled);
}

}  // namespace
}  // namespace strand
