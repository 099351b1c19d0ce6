#include "strand/task_group.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "support.hpp"

namespace strand {
namespace {

using namespace std::chrono_literals;
using testing::Gate;
using testing::ReportCapture;

TEST(TaskGroup, WaitsForEveryTask) {
  ThreadPool pool(2);
  TaskGroup group(pool);
  std::atomic<int> count{0};
  for (int i = 0; i < 10'000; ++i) group.run([&count] { ++count; });
  group.wait();
  EXPECT_EQ(count, 10'000);
}

TEST(TaskGroup, RethrowsTheFirstErrorThenCanBeReused) {
  ThreadPool pool(1);
  TaskGroup group(pool);
  group.run([] { throw std::range_error("first"); });
  try {
    group.wait();
    FAIL() << "wait() must rethrow";
  } catch (const std::range_error& e) {
    EXPECT_STREQ(e.what(), "first");
  }
  std::atomic<int> count{0};
  group.run([&count] { ++count; });
  EXPECT_NO_THROW(group.wait());  // the error was handed over once
  EXPECT_EQ(count, 1);
}

int group_fib(ThreadPool& pool, int n) {
  if (n < 2) return n;
  int a = 0;
  TaskGroup group(pool);
  group.run([&] { a = group_fib(pool, n - 1); });
  const int b = group_fib(pool, n - 2);
  group.wait();
  return a + b;
}

TEST(TaskGroup, NestedGroupsOnOneWorkerDoNotDeadlock) {
  ThreadPool pool(1);
  EXPECT_EQ(pool.submit([&pool] { return group_fib(pool, 18); }).get(8s), 2584);
}

// Occupies the only worker of `pool` until `gate` opens; returns once the worker is surely busy.
void occupy_only_worker(ThreadPool& pool, const Gate& gate) {
  Gate busy;
  pool.post([gate, busy] {
    busy.open();
    gate.wait();
  });
  ASSERT_TRUE(busy.wait_for(5s));
}

TEST(TaskGroup, WaitFromOutsideThePoolHelps) {
  ThreadPool pool(1);
  Gate gate;
  occupy_only_worker(pool, gate);  // busy until the gate opens
  TaskGroup group(pool);
  std::atomic<int> count{0};
  for (int i = 0; i < 100; ++i) group.run([&count] { ++count; });
  group.wait();  // finishes without the worker: this thread ran the tasks itself
  EXPECT_EQ(count, 100);
  gate.open();
}

// The thread that made a group counts the tasks it runs apart from other threads (a plain store,
// not an atomic add): another thread may still wait for them.
TEST(TaskGroup, AnotherThreadWaitsForTheTasksOfTheThreadThatMadeIt) {
  ThreadPool pool(2);
  TaskGroup group(pool);  // made here: this thread is its owner
  Gate gate;
  std::atomic<int> count{0};
  for (int i = 0; i < 100; ++i) {
    group.run([&count, gate] {
      gate.wait();
      ++count;
    });
  }
  std::atomic<bool> returned{false};
  std::thread waiter([&] {
    group.wait();
    returned = true;
  });
  EXPECT_FALSE(returned);  // every task waits for the gate
  gate.open();
  waiter.join();
  EXPECT_EQ(count, 100);
}

TEST(TaskGroup, ItsOwnerAndOtherThreadsRunTasksIntoItAtOnce) {
  ThreadPool pool(2);
  TaskGroup group(pool);
  std::atomic<int> count{0};
  std::vector<std::thread> others;
  for (int t = 0; t < 3; ++t) {
    others.emplace_back([&] {
      for (int i = 0; i < 2'000; ++i) group.run([&count] { ++count; });
    });
  }
  for (int i = 0; i < 2'000; ++i) group.run([&count] { ++count; });
  for (auto& t : others) t.join();
  group.wait();
  EXPECT_EQ(count, 8'000);
}

TEST(TaskGroup, TasksMayRunMoreTasksIntoTheirOwnGroup) {
  ThreadPool pool(2);
  TaskGroup group(pool);
  std::atomic<int> count{0};
  std::function<void(int)> spread = [&](int depth) {
    ++count;
    if (depth == 0) return;
    group.run([&spread, depth] { spread(depth - 1); });
    group.run([&spread, depth] { spread(depth - 1); });
  };
  group.run([&spread] { spread(10); });
  group.wait();
  EXPECT_EQ(count, 2'047);
}

// wait() returns only once no thread is still inside the group's bookkeeping: the waiter may free
// the group at once (AddressSanitizer checks that nobody touches it afterwards).
TEST(TaskGroup, TheWaiterMayDestroyItAsSoonAsWaitReturns) {
  ThreadPool pool(2);
  for (int round = 0; round < 1'000; ++round) {
    auto group = std::make_unique<TaskGroup>(pool);
    for (int i = 0; i < 50; ++i) group->run([] {});
    std::thread([&group] {
      group->wait();
      group.reset();
    }).join();
  }
}

TEST(TaskGroup, CancelSkipsTasksNotYetStarted) {
  ThreadPool pool(1);
  Gate gate;
  occupy_only_worker(pool, gate);
  std::atomic<int> ran{0};
  {
    TaskGroup group(pool);
    group.cancel();
    EXPECT_TRUE(group.is_cancelled());
    for (int i = 0; i < 10; ++i) group.run([&ran] { ++ran; });
    group.wait();
    EXPECT_FALSE(group.is_cancelled());  // wait() ends the cancellation: the group is reusable
  }
  gate.open();
  EXPECT_EQ(ran, 0);
}

TEST(TaskGroup, RunOnAShutDownPoolIsAClearError) {
  ThreadPool pool(ThreadPool::Options{.threads = 1, .name = "batch pool"});
  pool.shutdown();
  TaskGroup group(pool);
  try {
    group.run([] {});
    FAIL() << "run() after shutdown must throw";
  } catch (const ExecutorShutDown& e) {
    EXPECT_STREQ(e.what(), "strand: cannot submit to batch pool: it has been shut down");
  }
  group.wait();  // nothing is left pending
}

TEST(TaskGroup, DestroyedWithoutWaitWaitsAndReportsTheError) {
  ReportCapture capture;
  ThreadPool pool(1);
  std::atomic<bool> finished{false};
  {
    TaskGroup group(pool);
    group.run([&finished] {
      finished = true;
      throw std::runtime_error("nobody asked");
    });
  }
  EXPECT_TRUE(finished);
  ASSERT_EQ(capture.reports().size(), 1U);
  EXPECT_EQ(capture.reports()[0].where,
            "strand: a TaskGroup task threw and the group was destroyed without wait()");
  EXPECT_EQ(capture.reports()[0].description, "std::runtime_error: nobody asked");
}

struct CopyThrows {
  CopyThrows() = default;
  CopyThrows(const CopyThrows&) { throw std::runtime_error("no copy"); }
  void operator()() const {}
};

TEST(TaskGroup, ATaskThatCannotBeCopiedInLeavesTheGroupAsItWas) {
  ThreadPool pool(1);
  TaskGroup group(pool);
  const CopyThrows task;
  EXPECT_THROW(group.run(task), std::runtime_error);
  group.wait();  // returns at once: nothing was counted
}

TEST(TaskGroup, TasksMayTakeTheStopToken) {
  ThreadPool pool(1);
  TaskGroup group(pool);
  std::atomic<bool> possible{false};
  group.run([&possible](std::stop_token st) { possible = st.stop_possible(); });
  group.wait();
  EXPECT_TRUE(possible);
}

}  // namespace
}  // namespace strand
