#include "strand/go.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <thread>

#include "strand/event_loop.hpp"
#include "strand/select.hpp"

namespace strand {
namespace {

using namespace std::chrono_literals;

long fib(int n) {
  return n < 2 ? n : fib(n - 2) + fib(n - 1);
}

void fibonacci(Endpoint<long, int>& self, int n) {
  self.put(fib(n));
}

TEST(Go, TheTaskPutsTheCallerGets) {
  auto spool = go(fibonacci, 10);
  EXPECT_EQ(spool.get(), 55);
  EXPECT_EQ(spool.get(), std::nullopt);  // the task returned: the link is closed
  spool.handle().get(5s);
  EXPECT_FALSE(spool.alive());
}

TEST(Go, BothDirections) {
  auto echo = go([](Endpoint<std::string, int>& self) {
    while (auto n = self.get()) self.put(std::to_string(*n * 2));
  });
  for (int i = 1; i <= 3; ++i) {
    echo.put(i);
    EXPECT_EQ(echo.get(), std::to_string(i * 2));
  }
  EXPECT_TRUE(echo.alive());
  echo.close();  // the task's get() returns empty, and it returns
  echo.handle().get(5s);
  EXPECT_FALSE(echo.alive());
}

TEST(Go, CloseStopsATaskThatPuts) {
  auto pulse = go([](Endpoint<int, int>& self) {
    for (int i = 0; self.alive(); ++i) self.put(i);
  });
  EXPECT_EQ(pulse.get(), 0);
  EXPECT_EQ(pulse.get(), 1);
  pulse.close();
  pulse.handle().get(5s);  // its blocked put threw ChannelClosed: a quiet end
  EXPECT_EQ(pulse.handle().status(), Status::completed);
}

TEST(Go, DroppingTheEndpointEndsTheTask) {
  Handle<void> h;
  {
    auto forever = go([](Endpoint<int, int>& self) {
      for (;;) self.put(1);
    });
    h = forever.handle();
  }
  h.get(5s);
}

TEST(Go, AnExceptionFailsTheHandleAndClosesTheLink) {
  auto failing = go([](Endpoint<int, int>& self) {
    self.put(1);
    throw std::runtime_error("task failed");
  });
  EXPECT_EQ(failing.get(), 1);
  EXPECT_EQ(failing.get(), std::nullopt);
  EXPECT_THROW(failing.handle().get(5s), std::runtime_error);
}

TEST(Go, FactoryStartsATaskPerCall) {
  auto fib_task = go_factory(fibonacci);
  auto a = fib_task(10);
  auto b = fib_task(20);
  EXPECT_EQ(b.get(), 6765);
  EXPECT_EQ(a.get(), 55);
}

TEST(Go, BufferedLinks) {
  auto producer = go(buffered(3), [](Endpoint<int, int>& self) {
    for (int i = 0; i < 3; ++i) self.put(i);  // does not wait for the caller
  });
  producer.handle().get(5s);
  EXPECT_EQ(producer.get(), 0);
  EXPECT_EQ(producer.get(), 1);
  EXPECT_EQ(producer.get(), 2);
  EXPECT_EQ(producer.get(), std::nullopt);
}

TEST(Go, SelectOverEndpoints) {
  auto pulse = go_factory([](Endpoint<std::string, int>& self, std::string name) {
    while (self.alive()) self.put("ping from " + name);
  });
  auto one = pulse("one");
  auto two = pulse("two");
  int from_one = 0, from_two = 0;
  for (std::size_t source : select_each(one, two)) {
    if (source == 0) {
      EXPECT_EQ(one.get(), "ping from one");
      ++from_one;
    } else {
      EXPECT_EQ(two.get(), "ping from two");
      ++from_two;
    }
    if (from_one + from_two == 20) {
      one.close();
      two.close();
    }
  }
  EXPECT_EQ(from_one + from_two, 20);
}

TEST(Go, CoroutinesUseEndpoints) {
  auto doubler = go([](Endpoint<int, int>& self) {
    while (auto v = self.get()) self.put(*v * 2);
  });
  auto body = [](Endpoint<int, int>& d) -> Coro<int> {
    int sum = 0;
    for (int i = 1; i <= 10; ++i) {
      co_await d.send(i);
      sum += *co_await d.recv();
    }
    co_return sum;
  };
  EXPECT_EQ(run(body(doubler)), 110);
}

}  // namespace
}  // namespace strand
