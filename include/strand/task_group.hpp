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
  explicit TaskGroup(ThreadPool& pool = default_pool()) noexcept : pool_(&pool) {}
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
    pending_.fetch_add(1, std::memory_order_relaxed);
    if (!detail::pool_push(pool_->core(), job.get())) {
      finish_one();
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

  static constexpr std::uint32_t kWaiter = 1U << 31;  // a thread sleeps on pending_
  static constexpr std::uint32_t kHelper = 1U << 30;  // a worker waits in help_until
  static constexpr std::uint32_t kCount = kHelper - 1;

  friend void detail::flush_group_completions(const void* next_key) noexcept;
  void note_finished() noexcept;              // batched per thread; see flush_group_completions
  void finish(std::uint32_t count) noexcept;  // the count drops by `count`
  void finish_one() noexcept { finish(1); }
  void record(std::exception_ptr error) noexcept;
  [[nodiscard]] bool is_done() const noexcept override {
    return (pending_.load(std::memory_order_acquire) & kCount) == 0;
  }
  bool arm_helper_wake() const noexcept override;

  ThreadPool* pool_;
  mutable std::atomic<std::uint32_t> pending_{0};
  std::atomic<bool> cancelled_{false};
  std::mutex error_mutex_;
  std::exception_ptr error_;
};

}  // namespace strand
