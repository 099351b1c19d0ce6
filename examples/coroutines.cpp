// Many coroutines talking over channels on one EventLoop thread: Go's concurrent prime sieve (a
// coroutine per prime, chained by unbuffered channels), a chain of 10,000 coroutines passing a
// number along, and a thread feeding a coroutine through the same kind of channel.
#include <cstdio>
#include <memory>
#include <thread>
#include <vector>

#include <strand/strand.hpp>

// Sends 2, 3, 4, ... until the channel is closed.
strand::Coro<void> generate(strand::Channel<int>& out) {
  try {
    for (int i = 2;; ++i) co_await out.send(i);
  } catch (const strand::ChannelClosed&) {  // the sieve is done
  }
}

// Passes on what `prime` does not divide.
strand::Coro<void> filter(strand::Channel<int>& in, strand::Channel<int>& out, int prime) {
  try {
    while (auto v = co_await in.recv()) {
      if (*v % prime != 0) co_await out.send(*v);
    }
  } catch (const strand::ChannelClosed&) {
  }
}

// The channels outlive every coroutine of the sieve: they belong to the caller.
using Channels = std::vector<std::unique_ptr<strand::Channel<int>>>;

strand::Coro<void> sieve(strand::EventLoop& loop, Channels& chans, int count) {
  chans.push_back(std::make_unique<strand::Channel<int>>());
  loop.spawn(generate(*chans.back()));
  std::printf("primes:");
  for (int i = 0; i < count; ++i) {
    const int prime = *co_await chans.back()->recv();
    std::printf(" %d", prime);
    auto& in = *chans.back();
    chans.push_back(std::make_unique<strand::Channel<int>>());
    loop.spawn(filter(in, *chans.back(), prime));
  }
  std::printf("\n");
  for (auto& ch : chans) ch->close();  // every coroutine of the sieve ends
}

// Each whisper adds one to what it hears and passes it on.
strand::Coro<void> whisper(strand::Channel<int>& left, strand::Channel<int>& right) {
  co_await left.send(1 + *co_await right.recv());
}

int main() {
  strand::EventLoop loop;
  Channels sieve_chans;
  loop.run(sieve(loop, sieve_chans, 10));
  loop.run();  // lets the sieve's coroutines finish

  constexpr int kWhispers = 10'000;
  Channels chans;
  for (int i = 0; i <= kWhispers; ++i) chans.push_back(std::make_unique<strand::Channel<int>>());
  for (int i = 0; i < kWhispers; ++i) loop.spawn(whisper(*chans[i], *chans[i + 1]));
  auto ends = [](strand::Channel<int>& leftmost,
                 strand::Channel<int>& rightmost) -> strand::Coro<int> {
    co_await rightmost.send(1);
    co_return *co_await leftmost.recv();
  };
  std::printf("%d coroutines passed the number along: %d\n", kWhispers,
              loop.run(ends(*chans.front(), *chans.back())));

  // A thread and a coroutine share a channel; the loop's thread never blocks on it.
  strand::Channel<int> from_thread(16);
  std::thread producer([&] {
    for (int i = 1; i <= 100; ++i) from_thread.put(i);
    from_thread.close();
  });
  auto total = [](strand::Channel<int>& in) -> strand::Coro<int> {
    int sum = 0;
    while (auto v = co_await in.recv()) sum += *v;
    co_return sum;
  };
  std::printf("sum from a thread: %d\n", loop.run(total(from_thread)));
  producer.join();
}
