// Thin wrappers over Linux futexes: the sleep/wake primitive under every strand wait.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace strand::detail {

// Sleeps while `word` holds `expected`. Returns false if `deadline` passed first. Spurious returns
// are allowed: callers re-check their condition in a loop.
bool futex_wait(const std::atomic<std::uint32_t>& word, std::uint32_t expected) noexcept;
bool futex_wait_until(const std::atomic<std::uint32_t>& word, std::uint32_t expected,
                      std::chrono::steady_clock::time_point deadline) noexcept;
// Returns how many sleepers it woke (0 or 1).
int futex_wake_one(const std::atomic<std::uint32_t>& word) noexcept;
void futex_wake_all(const std::atomic<std::uint32_t>& word) noexcept;

}  // namespace strand::detail
