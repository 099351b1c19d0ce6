#include "strand/channel.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <numeric>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "channel_support.hpp"
#include "strand/event_loop.hpp"
#include "support.hpp"

namespace strand {
namespace {

using namespace std::chrono_literals;

using testing::wait_until_queued;

TEST(Channel, BufferedKeepsOrderUpToCapacity) {
  Channel<int> ch(3);
  EXPECT_EQ(ch.capacity(), 3u);
  EXPECT_TRUE(ch.try_put(1));
  EXPECT_TRUE(ch.try_put(2));
  EXPECT_TRUE(ch.try_put(3));
  EXPECT_FALSE(ch.try_put(4));  // full
  EXPECT_EQ(ch.size(), 3u);
  EXPECT_EQ(ch.get(), 1);
  EXPECT_EQ(ch.try_get(), 2);
  EXPECT_EQ(ch.get(), 3);
  EXPECT_EQ(ch.try_get(), std::nullopt);
}

TEST(Channel, UnbufferedPutWaitsForAReceiver) {
  Channel<std::string> ch;
  EXPECT_FALSE(ch.try_put("nobody listens"));
  std::thread producer([&] { ch.put("hello"); });
  EXPECT_EQ(ch.get(), "hello");
  producer.join();
  EXPECT_EQ(ch.size(), 0u);
}

TEST(Channel, TryPutLeavesTheValueWhenItFails) {
  Channel<std::string> ch(1);
  std::string first = "first", second = "second";
  EXPECT_TRUE(ch.try_put(std::move(first)));
  EXPECT_FALSE(ch.try_put(std::move(second)));
  EXPECT_EQ(second, "second");
}

TEST(Channel, CloseDrainsThenGetReturnsEmpty) {
  Channel<int> ch(4);
  ch.put(1);
  ch.put(2);
  EXPECT_TRUE(ch.alive());
  ch.close();
  ch.close();  // idempotent
  EXPECT_FALSE(ch.alive());
  EXPECT_TRUE(ch.closed());
  EXPECT_EQ(ch.get(), 1);
  EXPECT_EQ(ch.get(), 2);
  EXPECT_EQ(ch.get(), std::nullopt);  // closed and drained: an empty optional, every time
  EXPECT_EQ(ch.get(), std::nullopt);
  EXPECT_EQ(ch.try_get(), std::nullopt);
}

TEST(Channel, PutOnAClosedChannelThrows) {
  Channel<int> ch(4);
  ch.close();
  try {
    ch.put(1);
    FAIL() << "put on a closed channel must throw";
  } catch (const ChannelClosed& e) {
    EXPECT_STREQ(e.what(), "strand: put on a closed channel");
  }
  EXPECT_THROW((void)ch.try_put(1), ChannelClosed);
  EXPECT_THROW((void)ch.put_for(1, 10ms), ChannelClosed);
  static_assert(std::is_base_of_v<Error, ChannelClosed>);
}

TEST(Channel, CloseWakesBlockedGettersAndPutters) {
  Channel<int> in;
  Channel<int> out;
  std::optional<int> got = 5;
  std::thread getter([&] { got = in.get(); });
  std::thread putter([&] { EXPECT_THROW(out.put(1), ChannelClosed); });
  wait_until_queued(in.core().get(), &detail::ChannelCore<int>::receivers);
  wait_until_queued(out.core().get(), &detail::ChannelCore<int>::senders);
  in.close();
  out.close();
  getter.join();
  putter.join();
  EXPECT_EQ(got, std::nullopt);
}

TEST(Channel, NegativeCapacityIsRefused) {
  try {
    Channel<int> ch(-1);
    FAIL() << "a negative capacity must throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "strand: a channel's capacity cannot be negative (got -1)");
  }
}

TEST(Channel, TimeoutsGiveUp) {
  Channel<int> ch;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(ch.get_for(20ms), std::nullopt);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 20ms);
  EXPECT_FALSE(ch.put_for(1, 20ms));
  // Nothing is left queued behind: a later receiver does not see the timed-out value.
  EXPECT_EQ(ch.try_get(), std::nullopt);
  std::thread producer([&] { ch.put(9); });
  EXPECT_EQ(ch.get_for(5s), 9);
  producer.join();
}

TEST(Channel, RangeForReadsUntilClosedAndDrained) {
  Channel<int> ch(2);
  std::thread producer([&] {
    for (int i = 1; i <= 100; ++i) ch.put(i);
    ch.close();
  });
  int sum = 0;
  for (int v : ch) sum += v;
  producer.join();
  EXPECT_EQ(sum, 5050);
}

TEST(Channel, ManyProducersManyConsumersLoseNothing) {
  for (std::ptrdiff_t capacity : {0, 1, 16}) {
    Channel<int> ch(capacity);
    constexpr int kProducers = 4, kConsumers = 3, kEach = 2000;
    std::atomic<long> sum{0};
    std::atomic<int> count{0};
    std::vector<std::thread> threads;
    for (int p = 0; p < kProducers; ++p) {
      threads.emplace_back([&, p] {
        for (int i = 0; i < kEach; ++i) ch.put(p * kEach + i);
      });
    }
    for (int c = 0; c < kConsumers; ++c) {
      threads.emplace_back([&] {
        while (auto v = ch.get()) {
          sum += *v;
          ++count;
        }
      });
    }
    for (int p = 0; p < kProducers; ++p) threads[p].join();
    ch.close();
    for (std::size_t t = kProducers; t < threads.size(); ++t) threads[t].join();
    const long n = kProducers * kEach;
    EXPECT_EQ(count.load(), n) << "capacity " << capacity;
    EXPECT_EQ(sum.load(), n * (n - 1) / 2) << "capacity " << capacity;
  }
}

TEST(Channel, MoveOnlyValues) {
  Channel<std::unique_ptr<int>> ch(1);
  ch.put(std::make_unique<int>(4));
  auto v = ch.get();
  ASSERT_TRUE(v && *v);
  EXPECT_EQ(**v, 4);
}

TEST(Channel, DestroyedWhileThreadsWaitWakesThemWithChannelClosed) {
  auto in = std::make_unique<Channel<int>>();
  auto out = std::make_unique<Channel<int>>();
  auto* in_core = in->core().get();
  auto* out_core = out->core().get();
  std::string getter_error, putter_error;
  std::thread getter([&] {
    try {
      (void)in->get();
    } catch (const ChannelClosed& e) {
      getter_error = e.what();
    }
  });
  std::thread putter([&] {
    try {
      out->put(3);
    } catch (const ChannelClosed& e) {
      putter_error = e.what();
    }
  });
  wait_until_queued(in_core, &detail::ChannelCore<int>::receivers);
  wait_until_queued(out_core, &detail::ChannelCore<int>::senders);
  in.reset();
  out.reset();
  getter.join();
  putter.join();
  EXPECT_EQ(getter_error, "strand: the channel was destroyed while waiting on it");
  EXPECT_EQ(putter_error, "strand: the channel was destroyed while waiting on it");
}

// --- coroutines --------------------------------------------------------------------------------

Coro<int> sum_received(Channel<int>& ch) {
  int sum = 0;
  while (auto v = co_await ch.recv()) sum += *v;
  co_return sum;
}

Coro<void> send_range(Channel<int>& ch, int from, int to) {
  for (int i = from; i <= to; ++i) co_await ch.send(i);
  ch.close();
}

TEST(Channel, CoroutinesTalkOnOneLoop) {
  for (std::ptrdiff_t capacity : {0, 4}) {
    Channel<int> ch(capacity);
    EventLoop loop;
    Handle<int> sum = loop.spawn(sum_received(ch));
    loop.spawn(send_range(ch, 1, 1000));
    loop.run();
    EXPECT_EQ(sum.get(), 500500);
  }
}

TEST(Channel, ThreadsAndCoroutinesMix) {
  Channel<int> to_coro;
  Channel<int> to_thread(2);
  std::thread producer([&] {
    for (int i = 1; i <= 500; ++i) to_coro.put(i);
    to_coro.close();
  });
  std::thread consumer([&] {
    long sum = 0;
    for (int v : to_thread) sum += v;
    EXPECT_EQ(sum, 2 * 125250);
  });
  auto relay = [](Channel<int>& in, Channel<int>& out) -> Coro<void> {
    while (auto v = co_await in.recv()) co_await out.send(*v * 2);
    out.close();
  };
  run(relay(to_coro, to_thread));
  producer.join();
  consumer.join();
}

TEST(Channel, SendOnAClosedChannelThrowsInACoroutine) {
  Channel<int> ch(1);
  ch.close();
  auto body = [](Channel<int>& c) -> Coro<std::string> {
    try {
      co_await c.send(1);
    } catch (const ChannelClosed& e) {
      co_return e.what();
    }
    co_return "no error";
  };
  EXPECT_EQ(run(body(ch)), "strand: put on a closed channel");
}

TEST(Channel, DestroyedWhileCoroutinesWaitWakesThemWithChannelClosed) {
  auto ch = std::make_unique<Channel<int>>();
  auto* core = ch->core().get();
  EventLoop loop;
  auto waiter = [](Channel<int>& c) -> Coro<std::string> {
    try {
      (void)co_await c.recv();
    } catch (const ChannelClosed& e) {
      co_return e.what();
    }
    co_return "no error";
  };
  Handle<std::string> a = loop.spawn(waiter(*ch));
  auto sender = [](Channel<int>& c) -> Coro<std::string> {
    try {
      co_await c.send(1);
      co_await c.send(2);  // the receiver took the first; nobody takes this one
    } catch (const ChannelClosed& e) {
      co_return e.what();
    }
    co_return "no error";
  };
  Handle<std::string> b = loop.spawn(sender(*ch));
  std::thread destroyer([&] {
    // Wait until the sender stands in the queue with its second value.
    wait_until_queued(core, &detail::ChannelCore<int>::senders);
    ch.reset();
  });
  loop.run();
  destroyer.join();
  EXPECT_EQ(a.get(), "no error");  // it got the first value
  EXPECT_EQ(b.get(), "strand: the channel was destroyed while waiting on it");
}

TEST(Channel, AwaitingOutsideALoopIsALogicError) {
  Channel<int> ch;
  auto body = [](Channel<int>& c) -> Coro<void> {
    (void)co_await c.recv();
  };
  Coro<void> coro = body(ch);
  // Resumed by hand, with no scheduler: it cannot suspend, so recv() throws.
  coro.frame().resume();
  ASSERT_TRUE(coro.done());
  try {
    coro.frame().promise().take();
    FAIL() << "expected a logic_error";
  } catch (const std::logic_error& e) {
    EXPECT_NE(std::string(e.what()).find("not running on an EventLoop"), std::string::npos);
  }
}

}  // namespace
}  // namespace strand
