// strand/task_group.hpp — TaskGroup: many tasks, one wait, no handle per task.
//
//   strand::TaskGroup group;               // on strand::default_pool()
//   for (auto& item : items) group.run([&item] { process(item); });
//   group.wait();                          // helps run the group's work; rethrows the first error
//
// The cheapest way to fan out work on a pool: a job per task and one shared counter. The waiting
// thread runs queued work itself (as oneTBB's task_group does), so recursive divide-and-conquer
// nests groups freely, even on a pool of one worker.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <stop_token>
#include <type_traits>
#include <utility>

#include "strand/detail/help.hpp"
#include "strand/detail/job.hpp"
#include "strand/thread_pool.hpp"

namespace strand {

class TaskGroup : private detail::HelpWaitable {
 public:
  explicit TaskGroup(ThreadPool& pool = default_pool()) noexcept
      : pool_(&pool), owner_(&detail::this_thread_token) {}
  TaskGroup(const TaskGroup&) = delete;
  TaskGroup& operator=(const TaskGroup&) = delete;
  // Waits for the group's tasks; an error nobody collected goes to strand's error reporter.
  ~TaskGroup();

  // Runs f() (or f(stop_token), requested if the pool shuts down cancelling) on the pool. Throws
  // strand::ExecutorShutDown once the pool is shut down.
  template <class F>
  void run(F&& f) {
    static_assert(std::is_invocable_v<std::decay_t<F>&> ||
                      std::is_invocable_v<std::decay_t<F>&, std::stop_token>,
                  "strand::TaskGroup::run: the task must be callable with no arguments or with "
                  "a std::stop_token");
    // Made before it is counted: if making it throws, the group is left as it was.
    auto job = std::make_unique<GroupJob<std::decay_t<F>>>(*this, std::forward<F>(f));
    count_submitted();
    if (!detail::pool_push(pool_->core(), job.get())) {
      finish(1);
      throw ExecutorShutDown(pool_->name());
    }
    job.release();  // the queue owns it now; it frees itself after running
  }

  // Blocks until every task run so far has finished, running queued work meanwhile. Rethrows the
  // first exception a task threw (then forgets it, so the group can be reused).
  void wait();

  // Tasks not yet started will not start; wait() then returns (or rethrows a task's error).
  void cancel() noexcept { cancelled_.store(true, std::memory_order_relaxed); }
  [[nodiscard]] bool is_cancelled() const noexcept {
    return cancelled_.load(std::memory_order_relaxed);
  }

 private:
  template <class F>
  class GroupJob final : public detail::Job {
   public:
    GroupJob(TaskGroup& group, F f) : group_(group), f_(std::move(f)) {}
    void run(const std::stop_token& pool_stop) noexcept override {
      if (!group_.is_cancelled()) {
        try {
          if constexpr (std::is_invocable_v<F&, std::stop_token>) {
            f_(pool_stop);
          } else {
            f_();
          }
        } catch (...) {
          group_.record(std::current_exception());
        }
      }
      finish();
    }
    void discard() noexcept override { finish(); }
    [[nodiscard]] const void* batch_key() const noexcept override { return &group_; }

   private:
    void finish() noexcept {
      TaskGroup& group = group_;
      delete this;  // before the count drops: the group may be gone right after
      group.note_finished();
    }
    TaskGroup& group_;
    F f_;
  };

  // The count of tasks run so far is split, so that the thread that made the group (its owner,
  // which usually submits everything) counts with a plain store: a locked instruction per task
  // would wait for every store before it (the job, the queue slot) to reach memory, and those are
  // cache lines the workers have just touched. Other threads count with an atomic add. Finishing
  // threads add to `finished_`; the group is done when that equals both submitted counts together.
  void count_submitted() noexcept {
    if (owner_ == &detail::this_thread_token) {
      owner_submitted_.store(owner_submitted_.load(std::memory_order_relaxed) + 1,
                             std::memory_order_relaxed);  // published with the job's push
    } else {
      shared_submitted_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  [[nodiscard]] std::uint64_t submitted() const noexcept {
    return owner_submitted_.load(std::memory_order_seq_cst) +
           shared_submitted_.load(std::memory_order_seq_cst);
  }

  // sleep_word_: a futex word; an epoch that moves when the group is done, and two flags.
  static constexpr std::uint32_t kWaiter = 1U << 31;  // a thread sleeps in wait()
  static constexpr std::uint32_t kHelper = 1U << 30;  // a worker sleeps in help_until
  static constexpr std::uint32_t kEpochMask = kHelper - 1;

  friend void detail::flush_group_completions(const void* next_key) noexcept;
  void note_finished() noexcept;              // batched per thread; see flush_group_completions
  void finish(std::uint32_t count) noexcept;  // `count` more tasks have finished
  void record(std::exception_ptr error) noexcept;
  [[nodiscard]] bool is_done() const noexcept override {
    // finished_ first: every task it counts was counted as submitted before it was queued, so
    // the submitted counts read after it are at least as large (never a false "done").
    const std::uint64_t finished = finished_.load(std::memory_order_seq_cst);
    return finished == submitted();
  }
  bool arm_helper_wake() const noexcept override;
  bool arm(std::uint32_t flag) const noexcept;

  ThreadPool* pool_;
  const void* const owner_;  // the thread that made the group: see count_submitted
  std::atomic<std::uint64_t> owner_submitted_{0};
  alignas(64) std::atomic<std::uint64_t> shared_submitted_{0};
  // Off the owner's cache line: the workers write these.
  alignas(64) std::atomic<std::uint64_t> finished_{0};
  mutable std::atomic<std::uint32_t> sleep_word_{0};
  // Threads inside finish(): wait() returns only once none is, since the group may be destroyed
  // as soon as wait() returns.
  std::atomic<std::uint32_t> finishing_{0};
  std::atomic<bool> cancelled_{false};
  // Set with error_: wait() (twice per group, with the destructor's) takes the mutex only if a
  // task threw. On fib(27) the two lock/unlock pairs were several percent of the round.
  std::atomic<bool> has_error_{false};
  std::mutex error_mutex_;
  std::exception_ptr error_;
};

}  // namespace strand
