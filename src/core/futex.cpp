#include "strand/detail/futex.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <climits>

namespace strand::detail {
namespace {

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t),
              "futexes need a plain 32-bit word");

auto* address(const std::atomic<std::uint32_t>& word) noexcept {
  return const_cast<std::uint32_t*>(reinterpret_cast<const std::uint32_t*>(&word));
}

long futex(const std::atomic<std::uint32_t>& word, int op, std::uint32_t value,
           const timespec* timeout, std::uint32_t mask) noexcept {
  return syscall(SYS_futex, address(word), op | FUTEX_PRIVATE_FLAG, value, timeout, nullptr, mask);
}

}  // namespace

bool futex_wait(const std::atomic<std::uint32_t>& word, std::uint32_t expected) noexcept {
  futex(word, FUTEX_WAIT, expected, nullptr, 0);
  return true;
}

bool futex_wait_until(const std::atomic<std::uint32_t>& word, std::uint32_t expected,
                      std::chrono::steady_clock::time_point deadline) noexcept {
  // steady_clock is CLOCK_MONOTONIC, which is what FUTEX_WAIT_BITSET measures absolute times in.
  const auto since_epoch = deadline.time_since_epoch();
  if (since_epoch <= std::chrono::nanoseconds::zero()) return false;
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(secs.count());
  ts.tv_nsec = static_cast<long>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch - secs).count());
  const long rc = futex(word, FUTEX_WAIT_BITSET, expected, &ts, FUTEX_BITSET_MATCH_ANY);
  return !(rc == -1 && errno == ETIMEDOUT);
}

int futex_wake_one(const std::atomic<std::uint32_t>& word) noexcept {
  const long woken = futex(word, FUTEX_WAKE, 1, nullptr, 0);
  return woken > 0 ? static_cast<int>(woken) : 0;
}

void futex_wake_all(const std::atomic<std::uint32_t>& word) noexcept {
  futex(word, FUTEX_WAKE, INT_MAX, nullptr, 0);
}

}  // namespace strand::detail
