#include "strand/event_loop.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "strand/channel.hpp"
#include "strand/promise.hpp"
#include "strand/thread_pool.hpp"
#include "support.hpp"

namespace strand {
namespace {

using namespace std::chrono_literals;
using testing::Gate;

TEST(EventLoop, RunReturnsTheValue) {
  auto body = []() -> Coro<std::string> {
    co_return "done";
  };
  EXPECT_EQ(run(body()), "done");
}

TEST(EventLoop, SpawnedCoroutinesInterleaveAtYields) {
  std::vector<std::string> trace;
  auto worker = [](std::vector<std::string>& t, std::string name) -> Coro<void> {
    for (int i = 0; i < 3; ++i) {
      t.push_back(name + std::to_string(i));
      co_await yield();
    }
  };
  EventLoop loop;
  loop.spawn(worker(trace, "a"));
  loop.spawn(worker(trace, "b"));
  EXPECT_EQ(loop.unfinished(), 2u);
  loop.run();
  EXPECT_EQ(loop.unfinished(), 0u);
  EXPECT_EQ(trace, (std::vector<std::string>{"a0", "b0", "a1", "b1", "a2", "b2"}));
}

TEST(EventLoop, SleepForOrdersTimersAndLetsOthersRun) {
  std::vector<int> order;
  auto sleeper = [](std::vector<int>& o, int ms) -> Coro<void> {
    co_await sleep_for(std::chrono::milliseconds(ms));
    o.push_back(ms);
  };
  EventLoop loop;
  const auto start = std::chrono::steady_clock::now();
  loop.spawn(sleeper(order, 30));
  loop.spawn(sleeper(order, 10));
  loop.spawn(sleeper(order, 20));
  loop.run();
  EXPECT_GE(std::chrono::steady_clock::now() - start, 30ms);
  EXPECT_EQ(order, (std::vector<int>{10, 20, 30}));
}

TEST(EventLoop, AwaitingAHandleDoesNotBlockTheLoop) {
  Gate gate;
  Handle<int> slow = default_pool().submit([gate] {
    gate.wait();
    return 7;
  });
  std::atomic<int> ticks{0};
  auto ticker = [](std::atomic<int>& t, Gate g) -> Coro<void> {
    // Runs while the other coroutine waits for the pool task: the loop's thread is free.
    for (int i = 0; i < 5; ++i) {
      ++t;
      co_await yield();
    }
    g.open();
  };
  auto waiter = [](Handle<int> h) -> Coro<int> {
    co_return co_await h;
  };
  EventLoop loop;
  Handle<int> result = loop.spawn(waiter(slow));
  loop.spawn(ticker(ticks, gate));
  loop.run();
  EXPECT_EQ(ticks.load(), 5);
  EXPECT_EQ(result.get(), 7);
}

TEST(EventLoop, AwaitingAFailedHandleRethrows) {
  Handle<int> failing = default_pool().submit([]() -> int { throw std::runtime_error("boom"); });
  auto waiter = [](Handle<int> h) -> Coro<int> {
    co_return co_await h;
  };
  try {
    run(waiter(failing));
    FAIL() << "expected the task's exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "boom");
  }
}

TEST(EventLoop, ACoroutineThatThrowsFailsItsHandle) {
  auto thrower = []() -> Coro<int> {
    co_await yield();
    throw std::invalid_argument("bad input");
  };
  EventLoop loop;
  Handle<int> h = loop.spawn(thrower());
  loop.run();
  EXPECT_EQ(h.status(), Status::failed);
  EXPECT_THROW(h.get(), std::invalid_argument);
}

TEST(EventLoop, SpawnFromAnotherThreadWakesTheLoop) {
  EventLoop loop;
  Promise<void> done;
  Handle<void> done_handle = done.handle();
  auto main_coro = [](Handle<void> d) -> Coro<void> {
    co_await d;
  };
  std::thread other([&loop, d = std::move(done)]() mutable {
    auto job = []() -> Coro<int> {
      co_return 3;
    };
    Handle<int> h = loop.spawn(job());
    h.wait();
    d.set_value();
  });
  loop.run(main_coro(done_handle));
  other.join();
}

TEST(EventLoop, DestroyedWithSuspendedCoroutinesFreesTheirFrames) {
  auto alive = std::make_shared<int>(0);
  Channel<int> never;
  Handle<int> stuck;
  Handle<void> sleeping;
  Gate gate;
  Handle<int> pending = default_pool().submit([gate] {
    gate.wait();
    return 1;
  });
  {
    EventLoop loop;
    auto on_channel = [](std::shared_ptr<int> keep, Channel<int>& ch) -> Coro<int> {
      auto v = co_await ch.recv();
      co_return *keep + v.value_or(0);
    };
    auto on_timer = [](std::shared_ptr<int> keep) -> Coro<void> {
      co_await sleep_for(std::chrono::hours(1));
      ++*keep;
    };
    auto on_handle = [](std::shared_ptr<int> keep, Handle<int> h) -> Coro<void> {
      *keep += co_await h;
    };
    stuck = loop.spawn(on_channel(alive, never));
    sleeping = loop.spawn(on_timer(alive));
    loop.spawn(on_handle(alive, pending));
    auto first = []() -> Coro<void> {
      co_return;
    };
    loop.run(first());  // everyone else is suspended now
    EXPECT_EQ(alive.use_count(), 4);
  }
  EXPECT_EQ(alive.use_count(), 1);  // every frame destroyed, with what it held
  EXPECT_THROW(stuck.get(), BrokenPromise);
  EXPECT_THROW(sleeping.get(), BrokenPromise);
  gate.open();
  pending.wait();  // completing after the loop is gone resumes nothing
  // The channel is still usable and no longer lists the destroyed coroutine.
  EXPECT_FALSE(never.try_put(1));
}

TEST(EventLoop, SpawnOnAPoolSpreadsCoroutinesOverWorkers) {
  ThreadPool pool(ThreadPool::Options{.threads = 2});
  Channel<int> ch(8);
  auto producer = [](Channel<int>& c) -> Coro<void> {
    for (int i = 1; i <= 100; ++i) {
      co_await c.send(i);
      if (i % 10 == 0) co_await yield();
    }
    c.close();
  };
  auto consumer = [](Channel<int>& c) -> Coro<int> {
    int sum = 0;
    while (auto v = co_await c.recv()) sum += *v;
    co_return sum;
  };
  Handle<int> sum = spawn_on(pool, consumer(ch));
  Handle<void> produced = spawn_on(pool, producer(ch));
  EXPECT_EQ(sum.get(5s), 5050);
  produced.get(5s);
}

TEST(EventLoop, SleepForOutsideALoopIsALogicError) {
  ThreadPool pool(ThreadPool::Options{.threads = 1});
  auto body = []() -> Coro<void> {
    co_await sleep_for(1ms);
  };
  try {
    spawn_on(pool, body()).get(5s);
    FAIL() << "expected a logic_error";
  } catch (const std::logic_error& e) {
    EXPECT_STREQ(e.what(), "strand: sleep_for needs an EventLoop (this coroutine is not on one)");
  }
}

TEST(EventLoop, CoroutinesPingPongOverUnbufferedChannels) {
  Channel<int> ping, pong;
  auto player = [](Channel<int>& in, Channel<int>& out, int rounds) -> Coro<int> {
    int last = 0;
    for (int i = 0; i < rounds; ++i) {
      last = *co_await in.recv();
      co_await out.send(last + 1);
    }
    co_return last;
  };
  auto starter = [](Channel<int>& out, Channel<int>& in, int rounds) -> Coro<int> {
    int v = 0;
    for (int i = 0; i < rounds; ++i) {
      co_await out.send(v);
      v = *co_await in.recv() + 1;
    }
    co_return v;
  };
  EventLoop loop;
  Handle<int> b = loop.spawn(player(ping, pong, 1000));
  Handle<int> a = loop.spawn(starter(ping, pong, 1000));
  loop.run();
  EXPECT_EQ(a.get(), 2000);
  EXPECT_EQ(b.get(), 1998);
}

}  // namespace
}  // namespace strand
