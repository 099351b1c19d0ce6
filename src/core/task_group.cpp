#include "strand/task_group.hpp"

#include <thread>

#include "cpu_relax.hpp"
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
  // help returns once done; this loop only guards that (an outside thread's help may also return
  // when its pool is shut down).
  while (arm(kWaiter)) {
    const std::uint32_t w = sleep_word_.load(std::memory_order_seq_cst);
    if ((w & kWaiter) == 0 || is_done()) continue;  // finished meanwhile: re-armed or done
    detail::futex_wait(sleep_word_, w);
  }
  // A finishing thread may still be about to wake us: the group must outlive it.
  for (int spins = 0; finishing_.load(std::memory_order_seq_cst) != 0; ++spins) {
    if (spins < 64) {
      detail::cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }
  if (cancelled_.load(std::memory_order_relaxed))
    cancelled_.store(false, std::memory_order_relaxed);
  // Every task has finished (and a recording task records before it counts itself finished).
  if (!has_error_.load(std::memory_order_acquire)) return;
  std::exception_ptr error;
  {
    std::lock_guard lock(error_mutex_);
    error = std::exchange(error_, nullptr);
    has_error_.store(false, std::memory_order_relaxed);
  }
  if (error) std::rethrow_exception(error);  // null if another wait() took it first
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
  finishing_.fetch_add(1, std::memory_order_seq_cst);
  const std::uint64_t finished = finished_.fetch_add(count, std::memory_order_seq_cst) + count;
  // Read after the add: every task counted in `finished` was counted as submitted before it was
  // queued, so this is never below `finished`; equal means done, and nobody else can see "done"
  // first and miss the wake (a later submission only makes a spurious wake).
  if (finished == submitted()) {
    const std::uint32_t w = sleep_word_.load(std::memory_order_seq_cst);
    if ((w & (kWaiter | kHelper)) != 0) {
      const std::uint32_t old =
          sleep_word_.exchange((w + 1) & kEpochMask, std::memory_order_seq_cst);
      if ((old & kWaiter) != 0) detail::futex_wake_all(sleep_word_);
      if ((old & kHelper) != 0) detail::notify_helpers();
    }
  }
  finishing_.fetch_sub(1, std::memory_order_seq_cst);
}

void TaskGroup::record(std::exception_ptr error) noexcept {
  std::lock_guard lock(error_mutex_);
  if (!error_) error_ = std::move(error);
  has_error_.store(true, std::memory_order_release);
}

bool TaskGroup::arm_helper_wake() const noexcept {
  return arm(kHelper);
}

// Sets `flag` unless done; false if done. A finish() that makes the group done after the flag is
// set sees it and wakes (both sides are seq_cst: one of the two sees the other).
bool TaskGroup::arm(std::uint32_t flag) const noexcept {
  std::uint32_t w = sleep_word_.load(std::memory_order_seq_cst);
  for (;;) {
    if (is_done()) return false;
    if ((w & flag) != 0) return true;
    if (sleep_word_.compare_exchange_weak(w, w | flag, std::memory_order_seq_cst)) {
      if (is_done()) return false;
      return true;
    }
  }
}

}  // namespace strand
