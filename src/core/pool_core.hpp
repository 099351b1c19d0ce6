// The inside of a ThreadPool: worker deques, per-thread submission slots, sleeping and helping.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "strand/detail/help.hpp"
#include "strand/detail/job.hpp"
#include "strand/thread_pool.hpp"
#include "work_stealing_deque.hpp"

namespace strand::detail {

class PoolCore : public std::enable_shared_from_this<PoolCore> {
 public:
  PoolCore(std::size_t threads, std::string name);
  ~PoolCore();

  void start();
  bool push(Job* job) noexcept;
  void shutdown(ShutdownMode mode);
  // For a pool destroyed from one of its own workers: stop accepting, let the workers drain and
  // end by themselves (they hold the core alive), join nobody.
  void abandon() noexcept;
  // Runs this pool's jobs on the calling thread until `w` is done or the deadline passes.
  void help(const HelpWaitable& w, std::optional<std::chrono::steady_clock::time_point> deadline);

  [[nodiscard]] bool is_current_worker() const noexcept;
  [[nodiscard]] std::size_t size() const noexcept { return deques_.size(); }
  [[nodiscard]] std::size_t sleeping() const noexcept { return sleepers_.load(); }
  [[nodiscard]] bool accepting() const noexcept { return accepting_.load(); }
  [[nodiscard]] const std::string& name() const noexcept { return name_; }

 private:
  // A deque for a thread outside the pool that submits to it: pushing stays contention-free.
  struct ExternalSlot {
    alignas(64) std::atomic<bool> owned{false};
    WorkStealingDeque deque;
  };
  static constexpr std::size_t kExternalSlots = 32;

  friend struct ExternalContext;

  void worker_main(std::size_t index);
  void drain_leftovers() noexcept;
  Job* find_job(WorkStealingDeque* own) noexcept;
  Job* steal(const WorkStealingDeque* own) noexcept;
  Job* search(WorkStealingDeque* own) noexcept;
  void sleep() noexcept;
  [[nodiscard]] bool has_work() const noexcept;
  void execute(Job* job) noexcept;
  void wake_for_new_work() noexcept;
  bool push_external(Job* job) noexcept;
  ExternalSlot* external_slot() noexcept;
  WorkStealingDeque* own_deque() const noexcept;

  const std::string name_;
  const std::uint64_t id_;
  const std::size_t max_searching_;  // at most this many idle workers spin at once
  std::vector<std::unique_ptr<WorkStealingDeque>> deques_;
  std::array<ExternalSlot, kExternalSlots> external_;

  // Every atomic below is on a cache line of its own: submitters read some on every push, workers
  // write others as they go idle, and sharing a line would bounce it between cores per task.
  alignas(64) std::atomic<std::size_t> external_used_{0};  // slots [0, n) have ever been owned
  alignas(64) std::atomic<std::size_t> overflow_count_{0};
  std::mutex overflow_mutex_;  // when more than kExternalSlots outside threads submit at once
  std::deque<Job*> overflow_;

  alignas(64) std::atomic<bool> accepting_{true};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> cancelling_{false};

  // Waking: idle workers first search (spin) for work, then sleep on epoch_ (a futex word). A push
  // wakes a sleeper only if nobody is searching (a searcher will find the job) and no wake is
  // already on its way (the woken worker has not run yet); a searcher that finds work passes the
  // baton by waking the next sleeper if more work waits. This is Go's scheduler policy.
  alignas(64) std::atomic<std::uint32_t> searching_{0};
  alignas(64) std::atomic<std::uint32_t> sleepers_{0};
  alignas(64) std::atomic<bool> wake_pending_{false};
  alignas(64) std::atomic<std::uint32_t> epoch_{0};

  std::stop_source stop_;
  const std::stop_token stop_token_ = stop_.get_token();

  std::mutex shutdown_mutex_;
  std::vector<std::thread> threads_;
};

}  // namespace strand::detail
