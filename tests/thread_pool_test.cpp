#include "strand/thread_pool.hpp"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "strand/task_group.hpp"
#include "support.hpp"

namespace strand {
namespace {

using namespace std::chrono_literals;
using testing::Gate;
using testing::ReportCapture;

TEST(ThreadPool, IsSizedToTheMachineUnlessTold) {
  EXPECT_EQ(ThreadPool().size(), hardware_threads());
  EXPECT_GE(hardware_threads(), 1U);
  EXPECT_EQ(ThreadPool(3).size(), 3U);
  EXPECT_EQ(&default_pool(), &default_pool());
  EXPECT_EQ(default_pool().size(), hardware_threads());
}

TEST(ThreadPool, SubmitPassesCopiesOfArguments) {
  ThreadPool pool(2);
  std::string text = "abc";
  Handle<std::size_t> h =
      pool.submit([](const std::string& s, int n) { return s.size() * n; }, text, 2);
  text = "changed";
  EXPECT_EQ(h.get(), 6U);
  auto owned = std::make_unique<int>(5);
  EXPECT_EQ(pool.submit([](std::unique_ptr<int>& p) { return *p; }, std::move(owned)).get(), 5);
}

TEST(ThreadPool, AStopTokenFirstParameterGetsOne) {
  ThreadPool pool(1);
  EXPECT_TRUE(
      pool.submit([](std::stop_token st, int x) { return st.stop_possible() && x == 1; }, 1).get());
}

TEST(ThreadPool, RunsManyTasksFromManyThreads) {
  ThreadPool pool(2);
  std::atomic<int> count{0};
  // More submitting threads than the pool has private submission slots: the rest share a queue.
  std::vector<std::thread> submitters;
  for (int t = 0; t < 40; ++t) {
    submitters.emplace_back([&] {
      std::vector<Handle<void>> hs;
      for (int i = 0; i < 500; ++i) hs.push_back(pool.submit([&count] { ++count; }));
      for (auto& h : hs) h.wait();
    });
  }
  for (auto& t : submitters) t.join();
  EXPECT_EQ(count, 40 * 500);
}

TEST(ThreadPool, IdleWorkersStealQueuedWork) {
  ThreadPool pool(2);
  // A task pushes two jobs onto its own worker's deque; they can only meet at the rendezvous if
  // the other worker steals one of them.
  std::mutex m;
  std::condition_variable cv;
  int arrived = 0;
  std::set<std::thread::id> threads;
  auto rendezvous = [&] {
    std::unique_lock lock(m);
    ++arrived;
    threads.insert(std::this_thread::get_id());
    cv.notify_all();
    return cv.wait_for(lock, 5s, [&] { return arrived >= 2; });
  };
  Handle<bool> parent = pool.submit([&] {
    TaskGroup group(pool);
    std::atomic<int> met{0};
    group.run([&] { met += rendezvous() ? 1 : 0; });
    group.run([&] { met += rendezvous() ? 1 : 0; });
    group.wait();
    return met == 2;
  });
  EXPECT_TRUE(parent.get(10s));
  EXPECT_EQ(threads.size(), 2U);
}

TEST(ThreadPool, OneWorkerWaitingOnANestedTaskDoesNotDeadlock) {
  ThreadPool pool(1);
  Handle<int> outer = pool.submit([&pool] {
    Handle<int> inner = pool.submit([] { return 41; });
    return inner.get() + 1;  // the only worker runs `inner` while it waits
  });
  EXPECT_EQ(outer.get(5s), 42);
}

int nested_fib(ThreadPool& pool, int n) {
  if (n < 2) return n;
  Handle<int> a = pool.submit([&pool, n] { return nested_fib(pool, n - 1); });
  const int b = nested_fib(pool, n - 2);
  return a.get() + b;
}

TEST(ThreadPool, DeeplyNestedWaitsOnOneWorker) {
  ThreadPool pool(1);
  EXPECT_EQ(pool.submit([&pool] { return nested_fib(pool, 16); }).get(8s), 987);
}

TEST(ThreadPool, SubmittingToAShutDownPoolIsAClearError) {
  ThreadPool pool(ThreadPool::Options{.threads = 1, .name = "render pool"});
  pool.shutdown();
  EXPECT_FALSE(pool.accepting());
  try {
    pool.submit([] { return 1; });
    FAIL() << "submit after shutdown must throw";
  } catch (const ExecutorShutDown& e) {
    EXPECT_STREQ(e.what(), "strand: cannot submit to render pool: it has been shut down");
  }
  EXPECT_THROW(pool.post([] {}), ExecutorShutDown);
  pool.shutdown();  // idempotent
}

TEST(ThreadPool, ShutdownDrainRunsEverythingAlreadySubmitted) {
  ThreadPool pool(1);
  Gate gate;
  std::atomic<int> ran{0};
  pool.submit([gate] { gate.wait(); });
  std::vector<Handle<void>> queued;
  for (int i = 0; i < 100; ++i) queued.push_back(pool.submit([&ran] { ++ran; }));
  std::thread closer([&] { pool.shutdown(ShutdownMode::drain); });
  gate.open();
  closer.join();
  EXPECT_EQ(ran, 100);
  for (auto& h : queued) EXPECT_EQ(h.status(), Status::completed);
}

TEST(ThreadPool, ShutdownCancelStopsRunningAndCancelsQueued) {
  ThreadPool pool(1);
  Gate started;
  Handle<int> running = pool.submit([started](std::stop_token stop) {
    started.open();
    testing::sleep_until_stopped(stop);
    return 1;
  });
  ASSERT_TRUE(started.wait_for(5s));
  std::atomic<int> ran{0};
  std::vector<Handle<void>> queued;
  for (int i = 0; i < 10; ++i) queued.push_back(pool.submit([&ran] { ++ran; }));
  pool.shutdown(ShutdownMode::cancel);
  EXPECT_EQ(running.status(), Status::cancelled);
  for (auto& h : queued) EXPECT_EQ(h.status(), Status::cancelled);
  EXPECT_EQ(ran, 0);
}

TEST(ThreadPool, ShutdownFromItsOwnWorkerIsRefused) {
  ThreadPool pool(1);
  Handle<void> h = pool.submit([&pool] { pool.shutdown(); });
  try {
    h.get();
    FAIL() << "shutdown from a worker must throw";
  } catch (const std::logic_error& e) {
    EXPECT_STREQ(e.what(),
                 "strand: strand pool: shutdown() called from one of its own workers, which would "
                 "wait for itself");
  }
}

TEST(ThreadPool, APostedJobThatThrowsIsReportedAndThePoolKeepsWorking) {
  ReportCapture capture;
  ThreadPool pool(1);
  pool.post([] { throw std::invalid_argument("posted boom"); });
  ASSERT_TRUE(capture.wait_for_count(1));
  EXPECT_EQ(capture.reports()[0].where, "strand: a posted pool job threw");
  EXPECT_EQ(capture.reports()[0].description, "std::invalid_argument: posted boom");
  EXPECT_EQ(pool.submit([] { return 3; }).get(5s), 3);
}

TEST(ThreadPool, IsWorkerThreadKnowsItsOwnWorkers) {
  ThreadPool a(1);
  ThreadPool b(1);
  EXPECT_FALSE(a.is_worker_thread());
  EXPECT_TRUE(a.submit([&a] { return a.is_worker_thread(); }).get());
  EXPECT_FALSE(a.submit([&b] { return b.is_worker_thread(); }).get());
}

// Waits (yielding, bounded) until `n` workers of `pool` are asleep.
bool wait_until_idle(const ThreadPool& pool, std::size_t n) {
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (pool.idle_workers() < n) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

TEST(ThreadPool, IdleWorkersCountsTheSleepingOnes) {
  ThreadPool pool(2);
  ASSERT_TRUE(wait_until_idle(pool, 2));
  Gate gate;
  Handle<void> busy = pool.submit([gate] { gate.wait(); });
  // Once the task runs, its worker is held by the gate and cannot be asleep.
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (busy.status() != Status::running && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  EXPECT_LE(pool.idle_workers(), 1U);
  gate.open();
  busy.get();
  EXPECT_TRUE(wait_until_idle(pool, 2));
}

// Two tasks that can only finish together, submitted back to back to a pool whose workers are
// asleep: the first worker woken must wake the second, or the pair waits forever.
TEST(ThreadPool, ABurstOnAnIdlePoolWakesEveryWorkerItNeeds) {
  ThreadPool pool(2);
  for (int round = 0; round < 20; ++round) {
    ASSERT_TRUE(wait_until_idle(pool, 2));  // the state under test: both workers asleep
    std::mutex m;
    std::condition_variable cv;
    int arrived = 0;
    auto meet = [&] {
      std::unique_lock lock(m);
      ++arrived;
      cv.notify_all();
      return cv.wait_for(lock, 5s, [&] { return arrived == 2; });
    };
    Handle<bool> a = pool.submit(meet);
    Handle<bool> b = pool.submit(meet);
    ASSERT_TRUE(a.get(8s)) << "round " << round;
    ASSERT_TRUE(b.get(8s)) << "round " << round;
  }
}

// A push that meets a worker falling asleep must still get its job run: pushes publish with a
// plain store, and a worker about to sleep pays for a heavy barrier instead (see
// src/core/asymmetric_barrier.hpp). Each job is waited for through a Gate, which runs nothing
// itself, and posted after a varying pause, so that the workers are caught searching, falling
// asleep or asleep. (A stress test: the race it guards against has a window of nanoseconds.)
TEST(ThreadPool, EveryPostRunsWhileTheWorkersKeepFallingAsleep) {
  ThreadPool pool(2);
  for (int i = 0; i < 3'000; ++i) {
    Gate ran;
    const auto pause_until = std::chrono::steady_clock::now() + std::chrono::microseconds(i % 200);
    while (std::chrono::steady_clock::now() < pause_until) {
    }
    pool.post([ran] { ran.open(); });
    ASSERT_TRUE(ran.wait_for(5s)) << "post " << i << " never ran";
  }
}

TEST(ThreadPool, DestroyedFromItsOwnWorkerEndsCleanly) {
  Gate destroyed;
  struct Holder {
    std::shared_ptr<ThreadPool> pool;
    Gate destroyed;
    ~Holder() {
      pool.reset();  // the last owner: ~ThreadPool runs here, on the pool's own worker
      destroyed.open();
    }
  };
  auto pool = std::make_shared<ThreadPool>(1);
  auto holder = std::make_shared<Holder>(Holder{pool, destroyed});
  pool->post([holder] {});
  holder.reset();
  pool.reset();
  EXPECT_TRUE(destroyed.wait_for(5s));
}

TEST(ThreadPool, AnIdlePoolUsesNoCpu) {
  ThreadPool pool;
  pool.submit([] {}).get();
  ASSERT_TRUE(wait_until_idle(pool, pool.size()));  // every worker has stopped searching
  rusage before{};
  rusage after{};
  getrusage(RUSAGE_SELF, &before);
  std::this_thread::sleep_for(1s);  // the measurement window itself, not a synchronisation
  getrusage(RUSAGE_SELF, &after);
  const auto cpu_us = [](const rusage& r) {
    return (r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1'000'000L + r.ru_utime.tv_usec +
           r.ru_stime.tv_usec;
  };
  const long used = cpu_us(after) - cpu_us(before);
  EXPECT_LT(used, 20'000) << "an idle pool of " << pool.size() << " workers used " << used
                          << " us of CPU in 1 s";
}

}  // namespace
}  // namespace strand
