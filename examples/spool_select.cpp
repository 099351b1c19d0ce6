// select, as in spool (which channel has a value?) and as in Go (receive and send cases, a
// default, a timeout; a random choice when several are ready).
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include <strand/strand.hpp>

using namespace std::chrono_literals;

int main() {
  // Spool's form: which source has something? Nothing is taken.
  strand::Channel<int> numbers(1);
  strand::Channel<std::string> words(1);
  words.put("hello");
  std::printf("ready: %zu\n", strand::select(numbers, words));
  std::printf("words: %s\n", words.get()->c_str());

  // Go's fibonacci with a quit channel: the select sends the next number or takes the quit.
  strand::Channel<long> fib;
  strand::Channel<int> quit;
  std::thread consumer([&] {
    for (int i = 0; i < 10; ++i) std::printf("%ld ", *fib.get());
    std::printf("\n");
    quit.put(0);
  });
  long x = 0, y = 1;
  for (bool running = true; running;) {
    strand::Select sel;
    sel.send(fib, x, [&] {
      const long next = x + y;
      x = y;
      y = next;
    });
    sel.recv(quit, [&](std::optional<int>) { running = false; });
    sel.wait();
  }
  consumer.join();
  std::printf("quit\n");

  // A default case never blocks; a timeout case gives up.
  strand::Channel<int> empty;
  strand::Select poll;
  poll.recv(empty);
  poll.on_default([] { std::printf("nothing ready\n"); });
  poll.wait();
  strand::Select patient;
  patient.recv(empty);
  patient.on_timeout(10ms, [] { std::printf("timed out\n"); });
  patient.wait();
}
