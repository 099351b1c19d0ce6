// Waiting without deadlock inside a pool: a worker that waits for something runs other queued work
// until that something is done, and only sleeps when there is nothing it could run.
#pragma once

#include <chrono>
#include <optional>

namespace strand::detail {

// Something a thread can wait for while helping.
class HelpWaitable {
 public:
  [[nodiscard]] virtual bool is_done() const noexcept = 0;
  // Asks to be told (through notify_helpers) when done. Returns false if it is already done.
  virtual bool arm_helper_wake() const noexcept = 0;

 protected:
  ~HelpWaitable() = default;
};

// If the calling thread is a strand pool worker, runs queued jobs until `w` is done (or the
// deadline passes) and returns true; returns false at once on any other thread, which should then
// sleep.
bool help_until(const HelpWaitable& w,
                std::optional<std::chrono::steady_clock::time_point> deadline) noexcept;

// Wakes every worker sleeping inside help_until so it re-checks what it waits for.
void notify_helpers() noexcept;

}  // namespace strand::detail

namespace strand::detail {
class PoolCore;
// As help_until, for `pool`'s jobs, on any thread (TaskGroup::wait uses it on outside threads too).
void help_pool_until(PoolCore& pool, const HelpWaitable& w);
}  // namespace strand::detail
