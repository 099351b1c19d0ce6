#include "strand/task_group.hpp"

#include "strand/detail/futex.hpp"

namespace strand {

TaskGroup::~TaskGroup() {
  try {
    wait();
  } catch (...) {
    report_error("strand: a TaskGroup task threw and the group was destroyed without wait()",
                 std::current_exception());
  }
}

void TaskGroup::wait() {
  if (!is_done()) detail::help_pool_until(pool_->core(), *this);
  // help returns once the count is zero; this loop only guards that and clears the wake flags.
  std::uint32_t w = pending_.load(std::memory_order_acquire);
  while ((w & kCount) != 0) {
    if ((w & kWaiter) == 0) {
      if (!pending_.compare_exchange_weak(w, w | kWaiter, std::memory_order_acq_rel,
                                          std::memory_order_acquire)) {
        continue;
      }
      w |= kWaiter;
    }
    detail::futex_wait(pending_, w);
    w = pending_.load(std::memory_order_acquire);
  }
  pending_.fetch_and(kCount, std::memory_order_relaxed);  // nobody sleeps on it any more
  std::exception_ptr error;
  {
    std::lock_guard lock(error_mutex_);
    error = std::exchange(error_, nullptr);
  }
  cancelled_.store(false, std::memory_order_relaxed);
  if (error) std::rethrow_exception(error);
}

namespace {

// Jobs of one group that this thread finished and has not yet subtracted from the group's count.
// One subtraction per batch instead of per job keeps the group's counter off the workers' path,
// so the thread submitting to the group does not fight them for its cache line.
struct FinishedBatch {
  TaskGroup* group = nullptr;
  std::uint32_t count = 0;
};
thread_local FinishedBatch finished_batch;
constexpr std::uint32_t kBatchLimit = 64;

}  // namespace

void TaskGroup::note_finished() noexcept {
  FinishedBatch& batch = finished_batch;
  if (batch.group != this) {
    detail::flush_group_completions();
    batch.group = this;
  }
  if (++batch.count >= kBatchLimit) detail::flush_group_completions();
}

void detail::flush_group_completions(const void* next_key) noexcept {
  FinishedBatch& batch = finished_batch;
  if (batch.group == nullptr || batch.group == next_key) return;
  TaskGroup* group = std::exchange(batch.group, nullptr);
  group->finish(std::exchange(batch.count, 0));
}

void TaskGroup::finish(std::uint32_t count) noexcept {
  const std::uint32_t old = pending_.fetch_sub(count, std::memory_order_acq_rel);
  if ((old & kCount) != count) return;
  // The group may be destroyed as soon as a waiter sees the count at zero; from here on only the
  // address of pending_ is used (a futex wake on a dead address is harmless).
  if ((old & kWaiter) != 0) detail::futex_wake_all(pending_);
  if ((old & kHelper) != 0) detail::notify_helpers();
}

void TaskGroup::record(std::exception_ptr error) noexcept {
  std::lock_guard lock(error_mutex_);
  if (!error_) error_ = std::move(error);
}

bool TaskGroup::arm_helper_wake() const noexcept {
  std::uint32_t w = pending_.load(std::memory_order_acquire);
  for (;;) {
    if ((w & kCount) == 0) return false;
    if ((w & kHelper) != 0) return true;
    if (pending_.compare_exchange_weak(w, w | kHelper, std::memory_order_acq_rel,
                                       std::memory_order_acquire)) {
      return true;
    }
  }
}

}  // namespace strand
