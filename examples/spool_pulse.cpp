// Spool's pulse: two tasks put a message, then sleep; the caller waits on both with select_each
// and reads whichever has something. Closing the endpoints stops the tasks.
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include <strand/strand.hpp>

using namespace std::chrono_literals;

int main() {
  auto pulse = strand::go_factory([](strand::Endpoint<std::string, int>& self, std::string name,
                                     std::chrono::milliseconds every) {
    while (self.alive()) {
      self.put("ping from " + name);
      std::this_thread::sleep_for(every);
    }
  });

  auto pulse1 = pulse("pulse1", 10ms);
  auto pulse2 = pulse("pulse2", 20ms);
  int received = 0;
  for (std::size_t source : strand::select_each(pulse1, pulse2)) {
    if (source == 0) {
      if (auto msg = pulse1.get()) std::printf("%s\n", msg->c_str());  // a pulse from pulse1
    } else {
      if (auto msg = pulse2.get()) std::printf("%s\n", msg->c_str());  // a pulse from pulse2
    }
    if (++received == 6) {
      pulse1.close();
      pulse2.close();
    }
  }
  pulse1.handle().get();
  pulse2.handle().get();
  std::printf("both pulses stopped after %d messages\n", received);
}
