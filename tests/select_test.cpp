#include "strand/select.hpp"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "channel_support.hpp"

namespace strand {
namespace {

using namespace std::chrono_literals;

using testing::wait_until_queued;

TEST(Select, ReturnsTheChannelThatHasAValueWithoutTakingIt) {
  Channel<int> numbers(1);
  Channel<std::string> words(1);
  words.put("hi");
  EXPECT_EQ(select(numbers, words), 1u);
  EXPECT_EQ(words.get(), "hi");  // still there: select only looked
  numbers.put(3);
  EXPECT_EQ(select(numbers, words), 0u);
}

TEST(Select, WaitsForAProducer) {
  Channel<int> a, b;
  std::thread producer([&] { b.put(5); });
  EXPECT_EQ(select(a, b), 1u);
  EXPECT_EQ(b.get(), 5);
  producer.join();
}

TEST(Select, AClosedChannelCountsAsReady) {
  Channel<int> a, b;
  std::thread closer([&] { a.close(); });
  EXPECT_EQ(select(a, b), 0u);
  EXPECT_EQ(a.get(), std::nullopt);
  closer.join();
}

TEST(Select, NoChannelsIsInvalid) {
  try {
    (void)select();
    FAIL() << "select() with no channels must throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "strand: select needs at least one channel (it would wait forever)");
  }
  std::vector<Channel<int>*> none;
  EXPECT_THROW((void)select(std::span<Channel<int>* const>(none)), std::invalid_argument);
  Select empty;
  try {
    (void)empty.wait();
    FAIL() << "a Select with no cases must throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(),
                 "strand: Select::wait needs at least one channel (it would wait forever)");
  }
}

TEST(Select, SelectEachYieldsReadySourcesUntilAllAreClosed) {
  Channel<int> a(4), b(4);
  std::thread producer([&] {
    for (int i = 0; i < 3; ++i) a.put(i);
    for (int i = 0; i < 2; ++i) b.put(i);
    a.close();
    b.close();
  });
  std::map<std::size_t, int> seen;
  for (std::size_t source : select_each(a, b)) {
    auto& ch_value = source == 0 ? a : b;
    if (ch_value.get()) ++seen[source];
  }
  producer.join();
  EXPECT_EQ(seen[0], 3);
  EXPECT_EQ(seen[1], 2);
}

TEST(Select, RecvCaseTakesTheValueAndRunsItsHandler) {
  Channel<int> numbers(1);
  Channel<std::string> words;
  numbers.put(7);
  int got = 0;
  Select sel;
  sel.recv(numbers, [&](std::optional<int> v) { got = *v; });
  sel.recv(words, [&](std::optional<std::string>) { FAIL(); });
  EXPECT_EQ(sel.wait(), 0u);
  EXPECT_EQ(got, 7);
  EXPECT_EQ(numbers.size(), 0u);
}

TEST(Select, SendCaseMeetsAReceiver) {
  Channel<int> out;
  std::thread receiver([&] { EXPECT_EQ(out.get(), 11); });
  bool sent = false;
  Select sel;
  sel.send(out, 11, [&] { sent = true; });
  EXPECT_EQ(sel.wait(), 0u);
  EXPECT_TRUE(sent);
  receiver.join();
}

TEST(Select, SelectsOnBothEndsOfAnUnbufferedChannel) {
  Channel<int> ch;
  std::thread sender([&] {
    Select s;
    s.send(ch, 3);
    EXPECT_EQ(s.wait(), 0u);
  });
  std::optional<int> got;
  Select r;
  r.recv(ch, [&](std::optional<int> v) { got = v; });
  EXPECT_EQ(r.wait(), 0u);
  sender.join();
  EXPECT_EQ(got, 3);
}

TEST(Select, DefaultRunsWhenNothingIsReady) {
  Channel<int> ch;
  bool defaulted = false;
  Select sel;
  sel.recv(ch);
  const std::size_t fallback = sel.on_default([&] { defaulted = true; });
  EXPECT_EQ(fallback, 1u);
  EXPECT_EQ(sel.wait(), fallback);
  EXPECT_TRUE(defaulted);
}

TEST(Select, TimeoutRunsWhenNothingCameInTime) {
  Channel<int> ch;
  bool timed_out = false;
  Select sel;
  sel.recv(ch);
  sel.on_timeout(20ms, [&] { timed_out = true; });
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(sel.wait(), 1u);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 20ms);
  EXPECT_TRUE(timed_out);
  EXPECT_FALSE(ch.try_put(1));  // the select left the channel's queue
}

TEST(Select, OnlyOneFallback) {
  Select sel;
  sel.on_default();
  try {
    sel.on_timeout(1s);
    FAIL() << "a second fallback must throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(),
                 "strand: Select::on_timeout: this Select already has a default or a timeout case");
  }
}

TEST(Select, SendOnAClosedChannelThrows) {
  Channel<int> ch;
  ch.close();
  Select sel;
  sel.send(ch, 1);
  EXPECT_THROW(sel.wait(), ChannelClosed);
}

TEST(Select, RecvOnAClosedChannelGivesNothing) {
  Channel<int> ch;
  ch.close();
  std::optional<int> got = 1;
  Select sel;
  sel.recv(ch, [&](std::optional<int> v) { got = v; });
  EXPECT_EQ(sel.wait(), 0u);
  EXPECT_EQ(got, std::nullopt);
}

TEST(Select, ChoosesUniformlyAmongReadyCases) {
  constexpr int kChannels = 4, kRounds = 4000;
  std::array<Channel<int>, kChannels> chans{Channel<int>(1), Channel<int>(1), Channel<int>(1),
                                            Channel<int>(1)};
  Select sel;
  for (auto& ch : chans) sel.recv(ch);
  std::array<int, kChannels> hits{};
  for (int round = 0; round < kRounds; ++round) {
    for (auto& ch : chans) (void)ch.try_put(round);  // keep every case ready
    ++hits[sel.wait()];
  }
  for (int h : hits) {
    // Expected 1000 each; 800 is more than six standard deviations away.
    EXPECT_GT(h, 800);
  }
}

TEST(Select, ManyProducersIntoOneSelectLoseNothing) {
  constexpr int kEach = 2000;
  Channel<int> a(8), b, c(1);
  std::vector<std::thread> producers;
  for (Channel<int>* ch : {&a, &b, &c}) {
    producers.emplace_back([ch] {
      for (int i = 1; i <= kEach; ++i) ch->put(i);
    });
  }
  long sum = 0;
  int received = 0;
  Select sel;
  const auto add = [&](std::optional<int> v) {
    sum += *v;
    ++received;
  };
  sel.recv(a, add);
  sel.recv(b, add);
  sel.recv(c, add);
  while (received < 3 * kEach) sel.wait();
  for (auto& t : producers) t.join();
  EXPECT_EQ(sum, 3L * kEach * (kEach + 1) / 2);
}

TEST(Select, ChannelDestroyedWhileASelectWaits) {
  auto a = std::make_unique<Channel<int>>();
  Channel<int> b;
  auto* core = a->core().get();
  std::string error;
  std::thread waiter([&] {
    Select sel;
    sel.recv(*a);
    sel.recv(b);
    try {
      sel.wait();
    } catch (const ChannelClosed& e) {
      error = e.what();
    }
  });
  wait_until_queued(core, &detail::ChannelCore<int>::receivers);
  a.reset();
  waiter.join();
  EXPECT_EQ(error, "strand: the channel was destroyed while waiting on it");
  EXPECT_FALSE(b.try_put(1));  // it left b's queue too
}

}  // namespace
}  // namespace strand
