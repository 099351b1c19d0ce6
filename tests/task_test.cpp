#include "strand/task.hpp"

#include <gtest/gtest.h>
#include <malloc.h>
#include <sys/resource.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "strand/make.hpp"
#include "support.hpp"

namespace strand {
namespace {

using namespace std::chrono_literals;

template <class E, class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "<no exception>";
}

TEST(TaskState, NamesAndTheStateMachine) {
  EXPECT_EQ(to_string(TaskState::pending), "PENDING");
  EXPECT_EQ(to_string(TaskState::cancelled), "CANCELLED");
  EXPECT_EQ(to_string(TaskEvent::dispatch), "dispatch");
  EXPECT_EQ(next_state(TaskState::pending, TaskEvent::dispatch), TaskState::running);
  EXPECT_EQ(next_state(TaskState::pending, TaskEvent::queue), TaskState::queued);
  EXPECT_EQ(next_state(TaskState::queued, TaskEvent::dispatch), TaskState::running);
  EXPECT_EQ(next_state(TaskState::running, TaskEvent::done), TaskState::done);
  EXPECT_EQ(next_state(TaskState::running, TaskEvent::fail), TaskState::failed);
  EXPECT_EQ(next_state(TaskState::queued, TaskEvent::cancel), TaskState::cancelled);
  EXPECT_EQ(next_state(TaskState::failed, TaskEvent::retry), TaskState::pending);
  EXPECT_EQ(next_state(TaskState::cancelled, TaskEvent::retry), TaskState::pending);
  EXPECT_EQ(next_state(TaskState::running, TaskEvent::dispatch), std::nullopt);
  EXPECT_EQ(next_state(TaskState::done, TaskEvent::retry), std::nullopt);
  EXPECT_EQ(next_state(TaskState::done, TaskEvent::cancel), std::nullopt);
  EXPECT_EQ(next_state(TaskState::pending, TaskEvent::done), std::nullopt);
  EXPECT_TRUE(is_finished(TaskState::failed));
  EXPECT_FALSE(is_finished(TaskState::running));
}

TEST(Task, RunStoresTheResultOfAnyType) {
  auto t1 = Task::make("t1", [] { return 42; });
  auto t2 = Task::make("t2", [] { return std::string("forty-two"); });
  auto t3 = Task::make("t3", [] {});
  EXPECT_EQ(t1->state(), TaskState::pending);
  t1->run();
  t2->run();
  t3->run();
  EXPECT_EQ(t1->state(), TaskState::done);
  EXPECT_EQ(t1->result<int>(), 42);
  EXPECT_EQ(t2->result<std::string>(), "forty-two");
  EXPECT_NO_THROW(t3->result());
  EXPECT_EQ(t1->exception(), nullptr);
  EXPECT_EQ(t1->name(), "t1");
}

TEST(Task, ResultOfTheWrongTypeNamesBoth) {
  auto t1 = Task::make("t1", [] { return 42; });
  t1->run();
  EXPECT_EQ(error_of<TaskError>([&] { (void)t1->result<double>(); }),
            "strand: task \"t1\": the result is int, not double");
}

TEST(Task, ResultBeforeItRanIsNotReady) {
  auto t1 = Task::make("t1", [] { return 1; });
  EXPECT_EQ(error_of<NotReady>([&] { (void)t1->result<int>(); }),
            "strand: task \"t1\" has no result yet: it is PENDING");
}

TEST(Task, DispatchingARunningTaskThrowsNamingTaskStateAndEvent) {
  auto t1 = Task::make("t1", [] {});
  EXPECT_EQ(t1->transition(TaskEvent::dispatch), TaskState::running);
  EXPECT_EQ(error_of<TaskError>([&] { t1->transition(TaskEvent::dispatch); }),
            "strand: task \"t1\": event dispatch is not allowed in state RUNNING");
  EXPECT_EQ(error_of<TaskError>([&] { t1->run(); }),
            "strand: task \"t1\": event dispatch is not allowed in state RUNNING");
  EXPECT_EQ(t1->state(), TaskState::running);
}

TEST(Task, RunningABlockedTaskThrowsBlockedError) {
  auto t1 = Task::make("t1", [] {});
  auto t2 = t1->then("t2", [] {});
  EXPECT_EQ(error_of<BlockedError>([&] { t2->run(); }),
            "strand: task \"t2\" is blocked: prerequisite \"t1\" is PENDING");
  EXPECT_EQ(t2->state(), TaskState::pending);
  t1->run();
  t2->run();
  EXPECT_EQ(t2->state(), TaskState::done);
}

TEST(Task, RequiringItselfIsACycle) {
  auto t1 = Task::make("t1");
  try {
    t1->require(t1);
    FAIL() << "no CycleError";
  } catch (const CycleError& e) {
    EXPECT_STREQ(e.what(),
                 "strand: task \"t1\" cannot require \"t1\": that would make a cycle t1 -> t1");
    EXPECT_EQ(e.cycle(), (std::vector<std::string>{"t1", "t1"}));
  }
}

TEST(Task, ACycleIsRefusedAndNamed) {
  auto t1 = Task::make("t1");
  auto t2 = t1->then("t2", [] {});
  auto t3 = t2->then("t3", [] {});
  try {
    t1->require(t3);
    FAIL() << "no CycleError";
  } catch (const CycleError& e) {
    EXPECT_STREQ(e.what(),
                 "strand: task \"t1\" cannot require \"t3\": that would make a cycle "
                 "t1 -> t3 -> t2 -> t1");
    EXPECT_EQ(e.cycle(), (std::vector<std::string>{"t1", "t3", "t2", "t1"}));
  }
  EXPECT_TRUE(t1->prerequisites().empty());  // the graph is left as it was
  auto t4 = Task::make("t4");
  t3->require(t4);  // not a cycle
  EXPECT_EQ(t3->prerequisites().size(), 2U);
}

TEST(Task, ThenAndRequireLinkBothWays) {
  auto t1 = Task::make("t1");
  auto t2 = t1->then("t2", [] {});
  EXPECT_EQ(t2->prerequisites(), (std::vector<TaskPtr>{t1}));
  EXPECT_EQ(t1->dependents(), (std::vector<TaskPtr>{t2}));
  t2.reset();
  EXPECT_TRUE(t1->dependents().empty());  // a dependent that is gone is not listed
}

// then() changes only the prerequisite's list of dependents, under that task's own lock, while
// require() and dependents() may run on other threads; a cycle is still refused meanwhile.
TEST(Task, ThenFromManyThreadsOnOneTaskKeepsEveryDependent) {
  constexpr int kThreads = 4;
  constexpr int kEach = 500;
  auto root = Task::make("root");
  std::vector<std::vector<TaskPtr>> made(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      for (int k = 0; k < kEach; ++k) made[i].push_back(root->then("t", [] {}));
      EXPECT_THROW(root->require(made[i].back()), CycleError);
      for (int k = 0; k < 50; ++k) EXPECT_LE(root->dependents().size(), kThreads * kEach + 0U);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(root->dependents().size(), static_cast<std::size_t>(kThreads * kEach));
  for (const auto& list : made) {
    for (const auto& t : list) ASSERT_EQ(t->prerequisites(), (std::vector<TaskPtr>{root}));
  }
}

// require() on a task nothing depends on takes no graph mutex (see task.cpp): three threads each
// add one edge of a ring of three fresh tasks at once, round after round. Any two edges are fine;
// the third would close the cycle. Exactly one of the three is refused every round, whichever
// order they land in, and the refused edge leaves no trace in either task.
TEST(Task, RequireFromThreeThreadsClosingARingRefusesExactlyOneEdge) {
  constexpr int kThreads = 3;
  constexpr int kRounds = 300;
  std::barrier start(kThreads + 1);
  std::barrier end(kThreads + 1);
  std::vector<TaskPtr> ring(kThreads);
  std::atomic<int> refused{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      for (int round = 0; round < kRounds; ++round) {
        start.arrive_and_wait();
        try {
          ring[i]->require(ring[(i + 1) % kThreads]);  // t0 -> t1 -> t2 -> t0
        } catch (const CycleError& e) {
          EXPECT_EQ(e.cycle().size(), 4u) << e.what();
          refused.fetch_add(1);
        }
        end.arrive_and_wait();
      }
    });
  }
  for (int round = 0; round < kRounds; ++round) {
    for (int i = 0; i < kThreads; ++i) ring[i] = Task::make("t" + std::to_string(i));
    refused = 0;
    start.arrive_and_wait();
    end.arrive_and_wait();
    ASSERT_EQ(refused.load(), 1) << "round " << round;
    std::size_t edges = 0;
    for (int i = 0; i < kThreads; ++i) {
      const auto prerequisites = ring[i]->prerequisites();
      const auto dependents = ring[(i + 1) % kThreads]->dependents();
      ASSERT_EQ(prerequisites.size(), dependents.size()) << "round " << round;
      if (!prerequisites.empty()) {
        EXPECT_EQ(prerequisites[0], ring[(i + 1) % kThreads]);
        EXPECT_EQ(dependents[0], ring[i]);
      }
      edges += prerequisites.size();
    }
    ASSERT_EQ(edges, 2u) << "round " << round;
  }
  for (auto& t : threads) t.join();
}

TEST(Task, AFunctionThatThrowsFailsTheTaskAndCanBeRepairedAndRetried) {
  int calls = 0;
  auto t1 = Task::make("t1", [&calls] {
    if (++calls == 1) throw std::runtime_error("boom");
    return calls;
  });
  t1->run();
  EXPECT_EQ(t1->state(), TaskState::failed);
  EXPECT_EQ(error_of<std::runtime_error>([&] { (void)t1->result<int>(); }), "boom");
  ASSERT_NE(t1->exception(), nullptr);
  t1->retry();
  EXPECT_EQ(t1->state(), TaskState::pending);
  EXPECT_EQ(t1->exception(), nullptr);
  t1->run();
  EXPECT_EQ(t1->result<int>(), 2);
}

TEST(Task, RetryIsOnlyForFailedOrCancelledTasks) {
  auto t1 = Task::make("t1", [] {});
  EXPECT_EQ(error_of<TaskError>([&] { t1->retry(); }),
            "strand: task \"t1\": event retry is not allowed in state PENDING");
  t1->run();
  EXPECT_EQ(error_of<TaskError>([&] { t1->retry(); }),
            "strand: task \"t1\": event retry is not allowed in state DONE");
}

TEST(Task, CancelOnExceptionCancelsInsteadOfFailing) {
  auto t1 = Task::make("t1", []() -> int { throw std::runtime_error("boom"); },
                       {.cancel_on_exception = true});
  t1->run();
  EXPECT_EQ(t1->state(), TaskState::cancelled);
  EXPECT_EQ(error_of<Cancelled>([&] { (void)t1->result<int>(); }),
            "strand: task \"t1\" was cancelled: its function threw std::runtime_error: boom");
}

TEST(Task, CancelOnResultCancelsAndRetryRunsAgain) {
  int calls = 0;
  auto t1 = Task::make("t1", [&calls] { return ++calls; });
  t1->cancel_on_result([](const int& r) { return r < 2; });
  t1->run();
  EXPECT_EQ(t1->state(), TaskState::cancelled);
  EXPECT_EQ(error_of<Cancelled>([&] { t1->result(); }),
            "strand: task \"t1\" was cancelled: cancel_on_result returned true");
  t1->retry();
  t1->run();
  EXPECT_EQ(t1->state(), TaskState::done);
  EXPECT_EQ(t1->result<int>(), 2);
}

TEST(Task, CancelOnResultTakesAnyOrNothing) {
  auto t1 = Task::make("t1", [] { return 1; });
  t1->cancel_on_result([](const std::any& r) { return std::any_cast<int>(r) == 1; });
  t1->run();
  EXPECT_EQ(t1->state(), TaskState::cancelled);
  auto t2 = Task::make("t2", [] {});
  t2->cancel_on_result([] { return false; });
  t2->run();
  EXPECT_EQ(t2->state(), TaskState::done);
}

TEST(Task, CancelOnResultThatThrowsFailsTheTaskWithItsException) {
  auto t1 = Task::make("t1", [] { return 1; });
  t1->cancel_on_result([](int) -> bool { throw std::logic_error("bad predicate"); });
  t1->run();
  EXPECT_EQ(t1->state(), TaskState::failed);
  EXPECT_EQ(error_of<std::logic_error>([&] { t1->result(); }), "bad predicate");
}

TEST(Task, CancelOnResultOfTheWrongTypeFailsNamingBoth) {
  auto t1 = Task::make("t1", [] { return 1; });
  t1->cancel_on_result([](const double& d) { return d > 0; });
  t1->run();
  EXPECT_EQ(t1->state(), TaskState::failed);
  EXPECT_EQ(error_of<TaskError>([&] { t1->result(); }),
            "strand: task \"t1\": the result is int, not double");
}

TEST(Task, CancelBeforeItRuns) {
  auto t1 = Task::make("t1", [] {});
  EXPECT_TRUE(t1->cancel());
  EXPECT_EQ(t1->state(), TaskState::cancelled);
  EXPECT_FALSE(t1->cancel());
  EXPECT_EQ(error_of<Cancelled>([&] { t1->result(); }),
            "strand: task \"t1\" was cancelled: cancel() was called");
  EXPECT_EQ(error_of<TaskError>([&] { t1->transition(TaskEvent::cancel); }),
            "strand: task \"t1\": event cancel is not allowed in state CANCELLED");
}

TEST(Task, TrackTruePrintsEveryTransition) {
  auto t1 = Task::make("t1", [] {}, {.track = true});
  ::testing::internal::CaptureStdout();
  t1->run();
  EXPECT_EQ(::testing::internal::GetCapturedStdout(),
            "t1 PENDING->dispatch->RUNNING\nt1 RUNNING->done->DONE\n");
}

TEST(Task, TrackCallbackSeesEveryTransition) {
  std::vector<std::string> seen;
  auto t1 = Task::make("t1", [] { throw std::runtime_error("x"); });
  t1->track([&seen](const Task& t, TaskState from, TaskEvent event, TaskState to) {
    std::ostringstream line;
    line << t.name() << ' ' << from << "->" << event << "->" << to;
    seen.push_back(line.str());
  });
  t1->run();
  t1->retry();
  EXPECT_EQ(seen,
            (std::vector<std::string>{"t1 PENDING->dispatch->RUNNING", "t1 RUNNING->fail->FAILED",
                                      "t1 FAILED->retry->PENDING"}));
}

TEST(Task, NotifyIsCalledOnceOnCompletionOrAtOnce) {
  auto t1 = Task::make("t1", [] { return 5; });
  int called = 0;
  int value = 0;
  t1->notify([&](Task& t) {
    ++called;
    value = t.result<int>();
  });
  EXPECT_EQ(called, 0);
  t1->run();
  EXPECT_EQ(called, 1);
  EXPECT_EQ(value, 5);
  t1->notify([&] { ++called; });  // finished already: at once
  EXPECT_EQ(called, 2);
}

TEST(Task, NotifyCallbackThatThrowsIsReported) {
  testing::ReportCapture reports;
  auto t1 = Task::make("t1", [] {});
  t1->notify([] { throw std::runtime_error("in callback"); });
  t1->run();
  ASSERT_EQ(reports.reports().size(), 1U);
  EXPECT_EQ(reports.reports()[0].where, "strand: a task's notify callback threw");
  EXPECT_EQ(t1->state(), TaskState::done);
}

TEST(Task, BgRunsTheFunctionWithArgumentsInTheBackground) {
  auto t1 = Task::make("t1");
  Handle<void> h = t1->bg([](int a, int b) { return a + b; }, 2, 3);
  h.get();
  EXPECT_EQ(h.status(), Status::completed);
  EXPECT_EQ(t1->result<int>(), 5);

  auto t2 = Task::make("t2");
  Handle<void> failed = t2->bg([] { throw std::out_of_range("nope"); });
  EXPECT_THROW(failed.get(), std::out_of_range);
  EXPECT_EQ(t2->state(), TaskState::failed);
}

TEST(Task, BgRefusesABlockedTaskBeforeStarting) {
  auto t1 = Task::make("t1");
  auto t2 = t1->then("t2", [] {});
  EXPECT_EQ(error_of<BlockedError>([&] { (void)t2->bg(); }),
            "strand: task \"t2\" is blocked: prerequisite \"t1\" is PENDING");
}

// The seed's Task example: t2 requires t1, and t1's notify runs t2 once t1 completes.
TEST(Task, NotifyRunsADependentWhenItsPrerequisiteCompletes) {
  testing::Gate release;
  auto t1 = Task::make("task1");
  auto t2 = Task::make("task2", [] { return 7; });
  t2->require(t1);
  testing::Gate t2_done;
  t1->notify([t2, t2_done] {
    t2->run();
    t2_done.open();
  });
  auto h = t1->bg([release] { release.wait(); });
  EXPECT_EQ(t2->state(), TaskState::pending);
  release.open();
  h.get();
  ASSERT_TRUE(t2_done.wait_for(5s));
  EXPECT_EQ(t2->result<int>(), 7);
}

TEST(Task, CancelWhileRunningDropsTheOutcome) {
  testing::Gate started;
  testing::Gate release;
  auto t1 = Task::make("t1", [started, release] {
    started.open();
    release.wait();
    return 1;
  });
  auto h = t1->bg();
  ASSERT_TRUE(started.wait_for(5s));
  EXPECT_TRUE(t1->cancel());
  release.open();
  h.wait();
  EXPECT_EQ(h.status(), Status::cancelled);
  EXPECT_EQ(t1->state(), TaskState::cancelled);
}

TEST(Task, DestroyingALongChainDoesNotRecurse) {
  auto last = Task::make("t0");
  for (int i = 1; i < 200'000; ++i) last = last->then("t", [] {});
  last.reset();  // a recursive release would overflow the stack here
  SUCCEED();
}

// Task::make carves tasks from slabs per thread; a slab is reused once every task in it is gone,
// whichever thread let go of them, and a thread that exits gives up the rest of its slab. Threads
// that each make more than a slab's worth of tasks (255) hand them to this one and exit; the tasks
// still run, and then die here. (ThreadSanitizer checks the hand-over of the slabs.)
TEST(Task, TasksOutliveTheThreadsThatMadeThem) {
  constexpr int kThreads = 6;
  constexpr int kPerThread = 600;
  std::vector<TaskPtr> lasts(kThreads);
  for (int round = 0; round < 3; ++round) {
    std::vector<std::thread> makers;
    for (int k = 0; k < kThreads; ++k) {
      makers.emplace_back([&lasts, k] {
        auto last = Task::make("t0", [] { return 0; });
        for (int i = 1; i < kPerThread; ++i) {
          last = last->then("t", [i] { return i; });
        }
        lasts[k] = std::move(last);
      });
    }
    for (auto& t : makers) t.join();
    for (const auto& last : lasts) {
      ASSERT_EQ(make_now({last}).size(), 1U);
      EXPECT_EQ(last->result<int>(), kPerThread - 1);
    }
    for (auto& last : lasts) last.reset();
  }
}

#if !defined(__SANITIZE_ADDRESS__)  // under AddressSanitizer tasks come from the heap
// A graph's memory is kept when it dies, out of malloc's reach, and the next graph is made in it:
// no page fault per 4 KiB. (malloc_trim hands the heap's free memory back to the kernel: tasks from
// malloc would fault it all in again.)
TEST(Task, AGraphIsMadeInTheMemoryTheLastOneLeft) {
  constexpr std::size_t kTasks = 20'000;  // 5 MB: 1,250 pages
  std::vector<TaskPtr> tasks;
  tasks.reserve(kTasks);
  for (std::size_t i = 0; i < kTasks; ++i) tasks.push_back(Task::make("t"));
  tasks.clear();
  ::malloc_trim(0);
  rusage before{};
  ::getrusage(RUSAGE_THREAD, &before);
  for (std::size_t i = 0; i < kTasks; ++i) tasks.push_back(Task::make("t"));
  rusage after{};
  ::getrusage(RUSAGE_THREAD, &after);
  // Not zero: a sanitizer's own bookkeeping faults too (ThreadSanitizer's, some 50 pages).
  EXPECT_LT(after.ru_minflt - before.ru_minflt, 1'250 / 4);
}

// Task's fields are laid out by cache line (task.hpp): each task starts 16 bytes into a line, after
// its reference counts.
TEST(Task, TasksStartSixteenBytesIntoACacheLine) {
  std::vector<TaskPtr> tasks;
  for (int i = 0; i < 1'000; ++i) tasks.push_back(Task::make("t"));
  for (const auto& t : tasks) {
    ASSERT_EQ(reinterpret_cast<std::uintptr_t>(t.get()) % 64, 16U);
  }
}
#endif

TEST(Task, PrintsNameAndState) {
  auto t1 = Task::make("t1", [] {});
  std::ostringstream out;
  out << *t1;
  EXPECT_EQ(out.str(), "Task(\"t1\", state=PENDING)");
}

}  // namespace
}  // namespace strand
