#include "strand/runner.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "strand/channel.hpp"
#include "strand/detail/own_thread.hpp"
#include "strand/event_loop.hpp"
#include "support.hpp"

namespace strand {
namespace {

using namespace std::chrono_literals;
using testing::Gate;

int add3(int a, int b, int c) {
  return a * 100 + b * 10 + c;
}

TEST(Taskrunner, RunsInTheCallingThreadAndIsDoneOnReturn) {
  auto runner = Taskrunner([] { return std::this_thread::get_id(); });
  Handle<std::thread::id> h = runner();
  EXPECT_EQ(h.status(), Status::completed);
  EXPECT_EQ(h.get(), std::this_thread::get_id());
  EXPECT_EQ(runner.target(), Target::sync);
}

TEST(Taskrunner, KeepsTheExceptionInTheHandle) {
  auto runner = Taskrunner([]() -> int { throw std::invalid_argument("sync bad"); });
  Handle<int> h = runner();  // the call itself does not throw
  EXPECT_EQ(h.status(), Status::failed);
  EXPECT_THROW(h.get(), std::invalid_argument);
}

TEST(ThreadTaskrunner, RunsEachCallInItsOwnThread) {
  // Both calls stay alive until both have reported, so a thread id cannot be reused between them.
  Gate gate;
  std::mutex m;
  std::condition_variable cv;
  std::vector<std::thread::id> ids;
  auto runner = ThreadTaskrunner([&, gate] {
    {
      std::lock_guard lock(m);
      ids.push_back(std::this_thread::get_id());
      cv.notify_all();
    }
    gate.wait();
  });
  Handle<void> a = runner();
  Handle<void> b = runner();
  {
    std::unique_lock lock(m);
    ASSERT_TRUE(cv.wait_for(lock, 5s, [&] { return ids.size() == 2; }));
  }
  gate.open();
  a.get();
  b.get();
  EXPECT_NE(ids[0], ids[1]);
  EXPECT_NE(ids[0], std::this_thread::get_id());
  EXPECT_NE(ids[1], std::this_thread::get_id());
}

// Waits (yielding, up to 5 s) until `n` threads of the thread target are idle; false if never.
bool wait_for_idle_own_threads(std::size_t n) {
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (strand::detail::idle_own_threads() < n) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

TEST(ThreadTaskrunner, AThreadWhoseCallReturnedRunsTheNextCall) {
  auto id_of = ThreadTaskrunner([] { return std::this_thread::get_id(); });
  const std::thread::id first = id_of().get(5s);
  ASSERT_TRUE(wait_for_idle_own_threads(1)) << "the thread waits for another call";
  EXPECT_EQ(id_of().get(5s), first) << "no new thread while one is idle";
  EXPECT_NE(first, std::this_thread::get_id());
}

TEST(ThreadTaskrunner, AForkedChildStartsThreadsOfItsOwn) {
#ifdef STRAND_TSAN
  GTEST_SKIP() << "ThreadSanitizer does not support starting threads after a multithreaded fork";
#endif
#ifdef STRAND_ASAN
  GTEST_SKIP() << "AddressSanitizer's allocator is not fork-safe in a multithreaded process";
#endif
  auto twice = ThreadTaskrunner([](int x) { return 2 * x; });
  ASSERT_EQ(twice(1).get(5s), 2);
  ASSERT_TRUE(wait_for_idle_own_threads(1));  // an idle thread the child does not inherit
  const pid_t child = ::fork();
  ASSERT_NE(child, -1);
  if (child == 0) {
    ::alarm(5);  // a call handed to the parent's idle thread would never run: fail, not hang
    ::_exit(twice(21).get() == 42 ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "the child was killed by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(ThreadTaskrunner, ReturnsAtOnce) {
  Gate gate;
  auto runner = ThreadTaskrunner([gate] {
    gate.wait();
    return 1;
  });
  Handle<int> h = runner();
  EXPECT_FALSE(h.ready());
  gate.open();
  EXPECT_EQ(h.get(5s), 1);
}

TEST(PoolTaskrunner, RunsOnTheDefaultPool) {
  auto runner = PoolTaskrunner([] { return default_pool().is_worker_thread(); });
  EXPECT_TRUE(runner().get(5s));
}

TEST(PoolTaskrunner, RunsOnTheChosenPool) {
  ThreadPool mine(1);
  auto runner = PoolTaskrunner([&mine] { return mine.is_worker_thread(); }, use_pool(mine));
  EXPECT_TRUE(runner().get(5s));
}

TEST(Runners, InitArgumentsArePrependedToEveryCall) {
  auto partial = PoolTaskrunner(add3, 1, 2);
  EXPECT_EQ(partial(3).get(), 123);
  EXPECT_EQ(partial(4).get(), 124);
  // Options and init arguments may be interleaved; only the options are taken out.
  int ended = 0;
  auto mixed = Taskrunner(add3, 7, on_end([&ended](int v) { ended = v; }), 8);
  EXPECT_EQ(mixed(9).get(), 789);
  EXPECT_EQ(ended, 789);
}

TEST(Runners, CallArgumentsAreCopiedUnlessWrappedInRef) {
  Gate gate;
  auto runner = ThreadTaskrunner([gate](const std::string& s) {
    gate.wait();
    return s;
  });
  std::string text = "original";
  Handle<std::string> copied = runner(text);
  text = "changed";
  gate.open();
  EXPECT_EQ(copied.get(), "original");

  int counter = 0;
  auto bump = Taskrunner([](int& c) { ++c; });
  bump(std::ref(counter)).get();
  EXPECT_EQ(counter, 1);
}

TEST(Runners, AHandleOutlivesItsRunner) {
  Gate gate;
  Handle<int> h;
  {
    auto runner = ThreadTaskrunner(
        [gate](int x) {
          gate.wait();
          return x * 2;
        },
        21);
    h = runner();
  }
  gate.open();
  EXPECT_EQ(h.get(5s), 42);
}

TEST(Runners, AHandleOutlivesItsRunnerAndItsPool) {
  Handle<int> h;
  {
    ThreadPool pool(1);
    auto runner = PoolTaskrunner([](int x) { return x + 1; }, use_pool(pool));
    h = runner(1);
  }
  EXPECT_EQ(h.get(), 2);
}

TEST(Runners, CancelRequestsTheStopTokenTheFunctionTakes) {
  Gate started;
  auto runner = ThreadTaskrunner([started](std::stop_token stop, int limit) {
    started.open();
    testing::sleep_until_stopped(stop);
    return limit;
  });
  Handle<int> h = runner(5);
  ASSERT_TRUE(started.wait_for(5s));
  EXPECT_TRUE(h.cancel());
  EXPECT_THROW(h.get(), Cancelled);
}

TEST(AsTask, DefaultsToAThread) {
  auto task = as_task([] { return std::this_thread::get_id(); });
  EXPECT_EQ(task.target(), Target::thread);
  EXPECT_NE(task().get(), std::this_thread::get_id());
}

TEST(AsTask, TakesATargetTag) {
  EXPECT_EQ(as_task(strand::sync, [] { return 1; }).target(), Target::sync);
  EXPECT_EQ(as_task(strand::thread, [] { return 1; }).target(), Target::thread);
  auto on_pool = as_task(strand::pool, [] { return default_pool().is_worker_thread(); });
  EXPECT_EQ(on_pool.target(), Target::pool);
  EXPECT_TRUE(on_pool().get(5s));
}

TEST(AsTask, DecoratesAFunctionLikeTheSeed) {
  std::vector<int> chunks;
  auto long_blocking_function = as_task(
      [](int total, int chunk) {
        std::vector<int> sizes;
        for (int done = 0; done < total; done += chunk) sizes.push_back(chunk);
        return sizes;
      },
      on_iter([&chunks](int size) { chunks.push_back(size); }));
  long_blocking_function(10, 5).get();
  EXPECT_EQ(chunks, (std::vector<int>{5, 5}));
}

// --- the coroutine target ----------------------------------------------------------------------

TEST(CoroutineTaskrunner, RunsAPlainFunctionInsideALoop) {
  auto runner = CoroutineTaskrunner([](int x) { return EventLoop::current() != nullptr ? x : -1; });
  EXPECT_EQ(runner(4).get(std::chrono::seconds(5)), 4);  // outside a loop: strand::default_loop()
}

TEST(CoroutineTaskrunner, AwaitsACoroutineFunctionOnTheCallersLoop) {
  auto runner = CoroutineTaskrunner([](int x) -> Coro<int> {
    co_await yield();
    co_return x * 3;
  });
  auto body = [&runner]() -> Coro<int> {
    EventLoop* mine = EventLoop::current();
    Handle<int> h = runner(5);  // spawned on this very loop
    int v = co_await h;
    co_return EventLoop::current() == mine ? v : -1;
  };
  EXPECT_EQ(run(body()), 15);
}

TEST(CoroutineTaskrunner, YieldsBetweenOnIterCalls) {
  std::vector<std::string> trace;
  auto runner = CoroutineTaskrunner(
      [](int n) {
        std::vector<int> v(n);
        std::iota(v.begin(), v.end(), 0);
        return v;
      },
      on_iter([&trace](int i) { trace.push_back("item" + std::to_string(i)); }));
  auto other = [](std::vector<std::string>& t) -> Coro<void> {
    for (int i = 0; i < 3; ++i) {
      t.push_back("other" + std::to_string(i));
      co_await yield();
    }
  };
  auto body = [&]() -> Coro<void> {
    Handle<void> h = runner(3);
    co_await other(trace);
    co_await h;
  };
  run(body());
  // The runner's items and the other coroutine take turns.
  EXPECT_EQ(trace,
            (std::vector<std::string>{"other0", "item0", "other1", "item1", "other2", "item2"}));
}

TEST(CoroutineTaskrunner, YieldOnIterFalseRunsTheItemsInOneGo) {
  std::vector<std::string> trace;
  auto runner = CoroutineTaskrunner(
      [] {
        return std::vector<int>{0, 1, 2};
      },
      on_iter([&trace](int i) { trace.push_back(std::to_string(i)); }), yield_on_iter(false));
  auto body = [&]() -> Coro<void> {
    Handle<void> h = runner();
    trace.push_back("caller");
    co_await yield();
    trace.push_back("caller again");
    co_await h;
  };
  run(body());
  EXPECT_EQ(trace, (std::vector<std::string>{"caller", "0", "1", "2", "caller again"}));
}

TEST(CoroutineTaskrunner, HandsBackTheAwaitable) {
  int ended = 0;
  auto runner = CoroutineTaskrunner([](int base, int x) { return base + x; }, 100,
                                    on_end([&ended](int v) { ended = v; }));
  auto body = [&runner]() -> Coro<int> {
    co_return co_await runner.awaitable(5);
  };
  EXPECT_EQ(run(body()), 105);
  EXPECT_EQ(ended, 105);
}

TEST(CoroutineTaskrunner, AnExceptionReachesTheAwaiterAndOnError) {
  std::string seen;
  auto runner = CoroutineTaskrunner(
      []() -> Coro<int> {
        co_await yield();
        throw std::out_of_range("index 7");
      },
      on_error([&seen](const std::exception& e) { seen = e.what(); }));
  auto body = [&runner]() -> Coro<std::string> {
    try {
      co_await runner.awaitable();
    } catch (const std::out_of_range& e) {
      co_return e.what();
    }
    co_return "nothing";
  };
  EXPECT_EQ(run(body()), "index 7");
  EXPECT_EQ(seen, "index 7");
  EXPECT_THROW(runner().get(std::chrono::seconds(5)), std::out_of_range);
}

TEST(CoroutineTaskrunner, ACoroutineFunctionOnAThreadTargetRunsOnALoopOfItsOwn) {
  auto task = as_task(thread, []() -> Coro<int> {
    co_await sleep_for(std::chrono::milliseconds(1));
    co_return 9;
  });
  EXPECT_EQ(task().get(std::chrono::seconds(5)), 9);
}

TEST(CoroutineTaskrunner, HandlesOfADestroyedLoopReadCancelled) {
  Handle<int> h;
  Channel<int> never;
  auto runner = CoroutineTaskrunner([&never]() -> Coro<int> { co_return *co_await never.recv(); });
  {
    EventLoop loop;
    auto body = [&]() -> Coro<void> {
      h = runner();
      co_await yield();
      co_await yield();
    };
    loop.run(body());
  }
  EXPECT_EQ(h.status(), Status::cancelled);
}

}  // namespace
}  // namespace strand
