#include "strand/make.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "support.hpp"

namespace strand {
namespace {

using namespace std::chrono_literals;

std::vector<std::string> names(const std::vector<TaskPtr>& tasks) {
  std::vector<std::string> out;
  for (const auto& t : tasks) out.push_back(t->name());
  return out;
}

std::string failure_of(const TaskPtr& task) {
  try {
    task->result();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "<no exception>";
}

// Every test runs without an executor (in the iterating thread) and on a pool of two workers.
class Make : public ::testing::TestWithParam<bool> {
 protected:
  MakeOptions options(bool fail_fast = false) {
    return {.fail_fast = fail_fast, .executor = GetParam() ? &pool_ : nullptr};
  }
  ThreadPool pool_{2};
};

INSTANTIATE_TEST_SUITE_P(Executor, Make, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Pool" : "InThread"; });

// The seed's doctest, line for line.
TEST(MakeSeed, TrackedChainPrintsEachTransition) {
  ::testing::internal::CaptureStdout();
  auto t1 = Task::make("t1", [] { std::cout << "doing t1\n"; }, {.track = true});
  auto t2 = t1->then("t2", [] { std::cout << "doing t2\n"; }, {.track = true});
  const auto done = make_now({t2});
  EXPECT_EQ(::testing::internal::GetCapturedStdout(),
            "t1 PENDING->dispatch->RUNNING\n"
            "doing t1\n"
            "t1 RUNNING->done->DONE\n"
            "t2 PENDING->dispatch->RUNNING\n"
            "doing t2\n"
            "t2 RUNNING->done->DONE\n");
  EXPECT_EQ(names(done), (std::vector<std::string>{"t2"}));
}

TEST_P(Make, RunsPrerequisitesFirstAndYieldsOnlyRequestedTasks) {
  std::mutex m;
  std::vector<std::string> ran;
  auto record = [&](const char* name) {
    return [&, name] {
      std::lock_guard lock(m);
      ran.push_back(name);
    };
  };
  auto a = Task::make("a", record("a"));
  auto b = a->then("b", record("b"));
  auto c = a->then("c", record("c"));
  auto d = Task::make("d", record("d"));
  d->require(b).require(c);
  const auto done = make_now({d}, options());
  EXPECT_EQ(names(done), (std::vector<std::string>{"d"}));
  ASSERT_EQ(ran.size(), 4U);
  EXPECT_EQ(ran.front(), "a");
  EXPECT_EQ(ran.back(), "d");
  for (const auto& t : {a, b, c, d}) EXPECT_EQ(t->state(), TaskState::done);
}

TEST_P(Make, AFailedPrerequisiteFailsTheTaskNamingIt) {
  auto t1 = Task::make("t1", []() -> int { throw std::runtime_error("boom"); });
  auto t2 = t1->then("t2", [] { ADD_FAILURE() << "t2 must not run"; });
  auto t3 = t2->then("t3", [] { ADD_FAILURE() << "t3 must not run"; });
  const auto done = make_now({t3}, options());
  ASSERT_EQ(names(done), (std::vector<std::string>{"t3"}));
  EXPECT_EQ(t1->state(), TaskState::failed);
  EXPECT_EQ(t2->state(), TaskState::failed);
  EXPECT_EQ(t3->state(), TaskState::failed);
  EXPECT_EQ(failure_of(t2),
            "strand: task \"t2\" failed: prerequisite \"t1\" failed: std::runtime_error: boom");
  EXPECT_THROW(t2->result(), TaskError);
  EXPECT_EQ(failure_of(t3),
            "strand: task \"t3\" failed: prerequisite \"t2\" failed: strand::TaskError: "
            "strand: task \"t2\" failed: prerequisite \"t1\" failed: std::runtime_error: boom");
}

TEST_P(Make, ATaskWhosePrerequisiteFailedEarlierFailsToo) {
  auto t1 = Task::make("t1", [] { throw std::runtime_error("boom"); });
  t1->run();
  auto t2 = t1->then("t2", [] {});
  make_now({t2}, options());
  EXPECT_EQ(failure_of(t2),
            "strand: task \"t2\" failed: prerequisite \"t1\" failed: std::runtime_error: boom");
}

TEST_P(Make, ACancelledPrerequisiteCancelsTheTask) {
  auto t1 = Task::make("t1", [] { return 0; });
  t1->cancel_on_result([](int r) { return r == 0; });
  auto t2 = t1->then("t2", [] {});
  make_now({t2}, options());
  EXPECT_EQ(t1->state(), TaskState::cancelled);
  EXPECT_EQ(t2->state(), TaskState::cancelled);
  EXPECT_EQ(failure_of(t2), "strand: task \"t2\" was cancelled: prerequisite \"t1\" was cancelled");
  EXPECT_THROW(t2->result(), Cancelled);
}

TEST_P(Make, FailedBeatsCancelled) {
  auto bad = Task::make("bad", [] { throw std::runtime_error("x"); });
  auto off = Task::make("off");
  off->cancel();
  auto t = Task::make("t", [] {});
  t->require(off).require(bad);
  make_now({t}, options());
  EXPECT_EQ(t->state(), TaskState::failed);
}

TEST_P(Make, RepairAndRetryThenMakeAgain) {
  std::atomic<bool> broken{true};
  auto t1 = Task::make("t1", [&broken] {
    if (broken) throw std::runtime_error("broken");
  });
  auto t2 = t1->then("t2", [] { return 2; });
  make_now({t2}, options());
  EXPECT_EQ(t2->state(), TaskState::failed);
  broken = false;
  t1->retry();
  t2->retry();
  const auto done = make_now({t2}, options());
  EXPECT_EQ(names(done), (std::vector<std::string>{"t2"}));
  EXPECT_EQ(t2->result<int>(), 2);
}

TEST_P(Make, FinishedTasksAreYieldedWithoutRunningAgain) {
  int runs = 0;
  auto t1 = Task::make("t1", [&runs] { ++runs; });
  t1->run();
  const auto done = make_now({t1}, options());
  EXPECT_EQ(names(done), (std::vector<std::string>{"t1"}));
  EXPECT_EQ(runs, 1);
}

TEST_P(Make, FailFastStopsAtTheFirstTaskNotDone) {
  auto bad = Task::make("bad", [] { throw std::runtime_error("x"); });
  auto blocked = bad->then("blocked", [] {});
  auto later = blocked->then("later", [] {});
  const auto done = make_now({bad, later}, options(/*fail_fast=*/true));
  EXPECT_EQ(names(done), (std::vector<std::string>{"bad"}));
  EXPECT_EQ(later->state(), TaskState::pending);
}

TEST_P(Make, WithoutFailFastEveryRequestedTaskIsYielded) {
  auto bad = Task::make("bad", [] { throw std::runtime_error("x"); });
  auto good = Task::make("good", [] {});
  auto done = names(make_now({bad, good}, options()));
  std::sort(done.begin(), done.end());
  EXPECT_EQ(done, (std::vector<std::string>{"bad", "good"}));
}

TEST_P(Make, ADuplicateRequestIsYieldedOnce) {
  auto t1 = Task::make("t1", [] {});
  EXPECT_EQ(make_now({t1, t1}, options()).size(), 1U);
}

TEST_P(Make, WaitsForATaskRunningElsewhere) {
  testing::Gate release;
  auto t1 = Task::make("t1");
  auto h = t1->bg([release] { release.wait(); });
  auto t2 = t1->then("t2", [] { return 2; });
  auto later = make_later({t2}, options());
  EXPECT_FALSE(later.wait_for(20ms));  // t1 is still running elsewhere
  release.open();
  EXPECT_EQ(names(later.get(5s)), (std::vector<std::string>{"t2"}));
  EXPECT_EQ(t2->result<int>(), 2);
  h.get();
}

TEST_P(Make, LeavingTheLoopEarlyStopsDispatching) {
  auto first = Task::make("first", [] {});
  auto second = first->then("second", [] {});
  int yielded = 0;
  for (const auto& t : make({first, second}, options())) {
    (void)t;
    ++yielded;
    break;
  }
  EXPECT_EQ(yielded, 1);
  EXPECT_NE(second->state(), TaskState::running);  // the run is over: nothing is left running
}

// Bad input at scale: no recursion that grows with the graph, no quadratic time.
TEST_P(Make, AHundredThousandTasksSharingOnePrerequisite) {
  constexpr int kTasks = 100'000;
  std::atomic<int> ran{0};
  auto root = Task::make("root", [&ran] { ++ran; });
  std::vector<TaskPtr> leaves;
  leaves.reserve(kTasks);
  for (int i = 0; i < kTasks; ++i) leaves.push_back(root->then("leaf", [&ran] { ++ran; }));
  const auto done = make_now(leaves, options());
  EXPECT_EQ(done.size(), static_cast<std::size_t>(kTasks));
  EXPECT_EQ(ran.load(), kTasks + 1);
  EXPECT_TRUE(std::all_of(leaves.begin(), leaves.end(),
                          [](const TaskPtr& t) { return t->state() == TaskState::done; }));
}

TEST_P(Make, AHundredThousandTasksSharingAFailedPrerequisite) {
  constexpr int kTasks = 100'000;
  auto root = Task::make("root", [] { throw std::runtime_error("root"); });
  std::vector<TaskPtr> leaves;
  leaves.reserve(kTasks);
  for (int i = 0; i < kTasks; ++i) leaves.push_back(root->then("leaf", [] {}));
  EXPECT_EQ(make_now(leaves, options()).size(), static_cast<std::size_t>(kTasks));
  EXPECT_EQ(leaves.back()->state(), TaskState::failed);
}

// make() keeps its working memory for the next run (src/graph/make.cpp, Scratch): nothing of one
// run may leak into the next. A run whose tasks failed, then a bigger and a smaller run on fresh
// graphs, each of which must run every task exactly once and end DONE.
TEST_P(Make, ARunStartsFromNothingOfTheRunsBefore) {
  {
    auto bad = Task::make("bad", [] { throw std::runtime_error("boom"); });
    std::vector<TaskPtr> layer;
    for (int j = 0; j < 50; ++j) layer.push_back(bad->then("after_bad", [] {}));
    for (const auto& t : make_now(layer, options())) ASSERT_EQ(t->state(), TaskState::failed);
  }
  for (const int width : {200, 30, 120}) {
    std::atomic<int> ran{0};
    std::vector<TaskPtr> previous;
    for (int j = 0; j < width; ++j) previous.push_back(Task::make("first", [&ran] { ++ran; }));
    for (int layer = 1; layer < 5; ++layer) {
      std::vector<TaskPtr> next;
      for (int j = 0; j < width; ++j) {
        auto t = Task::make("t", [&ran] { ++ran; });
        t->require(previous[j]).require(previous[(j + 1) % width]);
        next.push_back(std::move(t));
      }
      previous = std::move(next);
    }
    const auto done = make_now(previous, options());
    ASSERT_EQ(done.size(), static_cast<std::size_t>(width)) << "width " << width;
    for (const auto& t : done) EXPECT_EQ(t->state(), TaskState::done) << "width " << width;
    EXPECT_EQ(ran.load(), width * 5) << "width " << width;
  }
}

TEST_P(Make, AChainOfAHundredThousandTasks) {
  constexpr int kTasks = 100'000;
  int ran = 0;  // a chain runs one task at a time, whichever thread
  auto first = Task::make("t0", [&ran] { ++ran; });
  auto last = first;
  for (int i = 1; i < kTasks; ++i) last = last->then("t", [&ran] { ++ran; });
  EXPECT_EQ(names(make_now({last}, options())), (std::vector<std::string>{"t"}));
  EXPECT_EQ(ran, kTasks);
  // ... and a cycle through all of it is found and named without recursion.
  try {
    first->require(last);
    FAIL() << "no CycleError";
  } catch (const CycleError& e) {
    EXPECT_EQ(e.cycle().size(), static_cast<std::size_t>(kTasks + 1));
  }
}

TEST(MakeOnPool, IndependentTasksRunInParallel) {
  ThreadPool pool(2);
  std::atomic<int> started{0};
  auto both_running = [&started] {
    ++started;
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (started.load() < 2 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::yield();
    }
    if (started.load() < 2) throw std::runtime_error("ran alone");
  };
  auto a = Task::make("a", both_running);
  auto b = Task::make("b", both_running);
  make_now({a, b}, {.executor = &pool});
  EXPECT_EQ(a->state(), TaskState::done);
  EXPECT_EQ(b->state(), TaskState::done);
}

// make_now waits by helping the pool: inside the only worker's job it runs the graph there.
TEST(MakeOnPool, MakeNowInTheJobOfAOneWorkerPoolDoesNotDeadlock) {
  ThreadPool pool(1);
  auto t1 = Task::make("t1", [] { return 1; });
  auto t2 = t1->then("t2", [] { return 2; });
  auto made = pool.submit([&] { return make_now({t2}, {.executor = &pool}).size(); });
  EXPECT_EQ(made.get(5s), 1U);
  EXPECT_EQ(t2->result<int>(), 2);
}

// Iterating make() inside the only worker's job: that worker helps run the graph between yields.
TEST(MakeOnPool, IteratingMakeInTheJobOfAOneWorkerPoolDoesNotDeadlock) {
  ThreadPool pool(1);
  auto t1 = Task::make("t1", [] { return 1; });
  auto t2 = t1->then("t2", [] { return 2; });
  auto t3 = Task::make("t3", [] { return 3; });
  auto yielded = pool.submit([&] {
    std::vector<std::string> out;
    for (const auto& t : make({t2, t3}, {.executor = &pool})) out.push_back(t->name());
    std::sort(out.begin(), out.end());
    return out;
  });
  EXPECT_EQ(yielded.get(5s), (std::vector<std::string>{"t2", "t3"}));
}

TEST(MakeOnPool, ConcurrentMakesShareTasksAndRunEachOnce) {
  ThreadPool pool(2);
  std::atomic<int> root_runs{0};
  auto root = Task::make("root", [&root_runs] { ++root_runs; });
  std::vector<TaskPtr> left;
  std::vector<TaskPtr> right;
  for (int i = 0; i < 200; ++i) {
    left.push_back(root->then("left", [] {}));
    right.push_back(root->then("right", [] {}));
  }
  auto shared = Task::make("shared", [] {});
  shared->require(left.back()).require(right.back());
  left.push_back(shared);
  right.push_back(shared);
  auto a = make_later(left, {.executor = &pool});
  auto b = make_later(right, {.executor = &pool});
  auto c = make_later(right);  // and one without an executor
  EXPECT_EQ(a.get(5s).size(), 201U);
  EXPECT_EQ(b.get(5s).size(), 201U);
  EXPECT_EQ(c.get(5s).size(), 201U);
  EXPECT_EQ(root_runs.load(), 1);
  EXPECT_EQ(shared->state(), TaskState::done);
}

TEST(MakeOnPool, YieldsInCompletionOrder) {
  ThreadPool pool(2);
  testing::Gate release;
  auto slow = Task::make("slow", [release] { release.wait(); });
  auto fast = Task::make("fast", [] {});
  std::vector<std::string> order;
  for (const auto& t : make({slow, fast}, {.executor = &pool})) {
    order.push_back(t->name());
    release.open();
  }
  EXPECT_EQ(order, (std::vector<std::string>{"fast", "slow"}));
}

TEST(MakeOnPool, AShutDownPoolFailsTheTask) {
  ThreadPool pool(1);
  pool.shutdown();
  auto t1 = Task::make("t1", [] {});
  make_now({t1}, {.executor = &pool});
  EXPECT_EQ(t1->state(), TaskState::failed);
  EXPECT_EQ(failure_of(t1), "strand: cannot submit to strand pool: it has been shut down");
}

// The tasks ready at the start go to the pool as one job that splits their list in halves; when
// the pool refuses that job, each of them fails as a single post would, and so do their dependents.
TEST(MakeOnPool, AShutDownPoolFailsEveryReadyTaskAndTheirDependents) {
  ThreadPool pool(1);
  pool.shutdown();
  auto a = Task::make("a", [] {});
  auto b = Task::make("b", [] {});
  auto c = Task::make("c", [] {});
  c->require(a).require(b);
  EXPECT_EQ(names(make_now({c}, {.executor = &pool})), (std::vector<std::string>{"c"}));
  const std::string refused = "strand: cannot submit to strand pool: it has been shut down";
  EXPECT_EQ(failure_of(a), refused);
  EXPECT_EQ(failure_of(b), refused);
  // The reason names whichever prerequisite failed first, and describes its error.
  const std::string reason = ": strand::ExecutorShutDown: " + refused;
  const std::string first = failure_of(c);
  EXPECT_TRUE(first == "strand: task \"c\" failed: prerequisite \"a\" failed" + reason ||
              first == "strand: task \"c\" failed: prerequisite \"b\" failed" + reason)
      << first;
}

// 1,000 tasks ready at once, spread over the pool by halving: each runs exactly once.
TEST(MakeOnPool, ManyReadyTasksEachRunOnce) {
  ThreadPool pool(2);
  std::atomic<int> runs{0};
  auto sink = Task::make("sink", [] {});
  for (int i = 0; i < 1'000; ++i) {
    sink->require(Task::make("source", [&runs] { runs.fetch_add(1, std::memory_order_relaxed); }));
  }
  EXPECT_EQ(names(make_now({sink}, {.executor = &pool})), (std::vector<std::string>{"sink"}));
  EXPECT_EQ(runs.load(), 1'000);
  for (const auto& p : sink->prerequisites()) EXPECT_EQ(p->state(), TaskState::done);
}

TEST(MakeLater, ReturnsAHandleToTheList) {
  auto t1 = Task::make("t1", [] { return 1; });
  auto t2 = t1->then("t2", [] { return 2; });
  Handle<std::vector<TaskPtr>> h = make_later({t2});
  EXPECT_EQ(names(h.get(5s)), (std::vector<std::string>{"t2"}));
  EXPECT_EQ(h.status(), Status::completed);
}

TEST(MakeLater, ANullTaskFailsTheHandle) {
  auto h = make_later({nullptr});
  EXPECT_THROW(h.get(5s), std::invalid_argument);
}

// ---- TaskQueue: the seed's three examples, and the rules it shares with make ----

std::vector<std::string> run_queue(TaskQueue& q) {
  std::vector<std::string> out;
  for (const auto& t : q.run()) out.push_back(t->name());
  return out;
}

TEST(TaskQueue, RunsTwoDependentTasks) {
  auto t1 = Task::make("t1", [] {});
  auto t2 = t1->then("t2", [] {});
  TaskQueue q({t2, t1});  // the order in the queue does not matter
  EXPECT_EQ(run_queue(q), (std::vector<std::string>{"t1", "t2"}));
}

TEST(TaskQueue, RunsOnlyTheQueuedTasks) {
  auto t1 = Task::make("t1", [] {});
  auto t2 = t1->then("t2", [] {});
  TaskQueue q({t1});
  EXPECT_EQ(run_queue(q), (std::vector<std::string>{"t1"}));
  EXPECT_EQ(t2->state(), TaskState::pending);
}

TEST(TaskQueue, RunDependentTasksPullsInDependents) {
  auto t1 = Task::make("t1", [] {});
  auto t2 = t1->then("t2", [] {});
  auto t3 = t2->then("t3", [] {});
  TaskQueue q({t1}, /*run_dependent_tasks=*/true);
  EXPECT_EQ(run_queue(q), (std::vector<std::string>{"t1", "t2", "t3"}));
  EXPECT_EQ(q.size(), 3U);
}

TEST(TaskQueue, AFailedPrerequisiteFailsAQueuedTask) {
  auto t1 = Task::make("t1", [] { throw std::runtime_error("boom"); });
  auto t2 = t1->then("t2", [] {});
  TaskQueue q({t1, t2});
  EXPECT_EQ(run_queue(q), (std::vector<std::string>{"t1", "t2"}));
  EXPECT_EQ(failure_of(t2),
            "strand: task \"t2\" failed: prerequisite \"t1\" failed: std::runtime_error: boom");
}

TEST(TaskQueue, RefusesANullTask) {
  EXPECT_THROW(TaskQueue({nullptr}), std::invalid_argument);
}

}  // namespace
}  // namespace strand
