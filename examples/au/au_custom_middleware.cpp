// au's custom middleware: a rate limiter written by hand (strand also ships RateLimitMiddleware).
#include <chrono>
#include <cstdio>
#include <deque>
#include <mutex>
#include <strand/strand.hpp>

using namespace std::chrono_literals;

class MyRateLimit : public strand::Middleware {
 public:
  explicit MyRateLimit(std::size_t max_per_minute) : max_per_minute_(max_per_minute) {}

  void before(const strand::ComputationInfo&) override {
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(mutex_);
    while (!requests_.empty() && now - requests_.front() >= 1min) requests_.pop_front();
    // Throwing a strand::Rejected refuses the computation; any other exception is only reported.
    if (requests_.size() >= max_per_minute_) throw strand::Rejected("Rate limit exceeded");
    requests_.push_back(now);
  }

 private:
  std::size_t max_per_minute_;
  std::mutex mutex_;
  std::deque<std::chrono::steady_clock::time_point> requests_;
};

int main() {
  auto temp = strand::temporary_async_compute(
      {.backend = strand::Target::thread, .middleware = {std::make_shared<MyRateLimit>(2)}});
  auto rate_limited_function = temp([](int x) { return x + 1; });
  for (int i = 0; i < 3; ++i) {
    auto h = rate_limited_function(i);
    try {
      std::printf("call %d: %d\n", i, h.get_result(5s));
    } catch (const strand::Rejected& e) {
      std::printf("call %d: %s\n", i, e.what());
    }
  }
  return 0;
}
