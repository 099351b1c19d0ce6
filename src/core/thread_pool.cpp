#include "strand/thread_pool.hpp"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <random>
#include <stdexcept>

#include "cpu_relax.hpp"
#include "pool_core.hpp"
#include "strand/detail/futex.hpp"

namespace strand {
namespace detail {
namespace {

// Helpers (workers waiting inside help()) of every pool sleep on one word: a finishing task that a
// helper armed, and any new work anywhere, bump it.
std::atomic<std::uint32_t> help_epoch{0};
std::atomic<std::uint32_t> help_sleepers{0};

std::atomic<std::uint64_t> next_pool_id{1};

// How long an idle worker keeps looking before it sleeps: rounds of exponentially longer pauses,
// then a few yields; tens of microseconds in all.
constexpr int kSpinRounds = 10;
constexpr int kYieldRounds = 4;
constexpr int kHelpSpin = 64;

struct WorkerContext {
  PoolCore* core = nullptr;
  WorkStealingDeque* deque = nullptr;
};
thread_local WorkerContext this_worker;

std::uint32_t next_random() noexcept {
  thread_local std::uint32_t x = std::random_device{}() | 1U;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return x;
}

}  // namespace

// The submission slot an outside thread holds in the pool it last submitted to; given back when the
// thread ends or moves to another pool.
struct ExternalContext {
  std::uint64_t pool_id = 0;
  std::weak_ptr<PoolCore> pool;
  PoolCore::ExternalSlot* slot = nullptr;

  void release() noexcept {
    if (slot != nullptr) {
      if (auto alive = pool.lock()) slot->owned.store(false, std::memory_order_release);
    }
    pool_id = 0;
    pool.reset();
    slot = nullptr;
  }
  ~ExternalContext() { release(); }
};
namespace {
thread_local ExternalContext this_thread_slot;
}  // namespace

PoolCore::PoolCore(std::size_t threads, std::string name)
    : name_(std::move(name)), id_(next_pool_id.fetch_add(1, std::memory_order_relaxed)) {
  if (threads == 0) threads = hardware_threads();
  deques_.reserve(threads);
  for (std::size_t i = 0; i < threads; ++i)
    deques_.push_back(std::make_unique<WorkStealingDeque>());
}

PoolCore::~PoolCore() {
  // Normally empty by now; a job left over never runs, but its handle must still finish.
  auto discard_all = [](WorkStealingDeque& d) {
    while (Job* job = d.steal()) job->discard();
  };
  for (auto& d : deques_) discard_all(*d);
  for (auto& slot : external_) discard_all(slot.deque);
  for (Job* job : overflow_) job->discard();
}

void PoolCore::start() {
  threads_.reserve(deques_.size());
  for (std::size_t i = 0; i < deques_.size(); ++i) {
    threads_.emplace_back([this, i] { worker_main(i); });
  }
}

bool PoolCore::is_current_worker() const noexcept {
  return this_worker.core == this;
}

WorkStealingDeque* PoolCore::own_deque() const noexcept {
  if (this_worker.core == this) return this_worker.deque;
  if (this_thread_slot.pool_id == id_ && this_thread_slot.slot != nullptr) {
    return &this_thread_slot.slot->deque;
  }
  return nullptr;
}

WorkStealingDeque* PoolCore::external_deque() noexcept {
  if (this_thread_slot.pool_id == id_) {
    return this_thread_slot.slot != nullptr ? &this_thread_slot.slot->deque : nullptr;
  }
  this_thread_slot.release();
  this_thread_slot.pool_id = id_;
  this_thread_slot.pool = weak_from_this();
  for (std::size_t i = 0; i < kExternalSlots; ++i) {
    auto& slot = external_[i];
    if (!slot.owned.load(std::memory_order_relaxed) &&
        !slot.owned.exchange(true, std::memory_order_acquire)) {
      std::size_t used = external_used_.load(std::memory_order_relaxed);
      while (used < i + 1 && !external_used_.compare_exchange_weak(used, i + 1)) {
      }
      this_thread_slot.slot = &slot;
      return &slot.deque;
    }
  }
  return nullptr;  // all slots taken: this thread uses the shared overflow queue
}

bool PoolCore::push(Job* job) noexcept {
  if (this_worker.core == this) {
    // A worker may always add work, even while the pool drains: that work is part of the drain.
    this_worker.deque->push(job);
  } else {
    submitting_.fetch_add(1, std::memory_order_seq_cst);
    if (!accepting_.load(std::memory_order_seq_cst)) {
      submitting_.fetch_sub(1, std::memory_order_release);
      return false;
    }
    try {
      if (WorkStealingDeque* d = external_deque()) {
        d->push(job);
      } else {
        std::lock_guard lock(overflow_mutex_);
        overflow_.push_back(job);
        overflow_count_.fetch_add(1, std::memory_order_seq_cst);
      }
    } catch (...) {  // out of memory growing a queue
      submitting_.fetch_sub(1, std::memory_order_release);
      return false;
    }
    submitting_.fetch_sub(1, std::memory_order_release);
  }
  wake_for_new_work();
  return true;
}

void PoolCore::wake_for_new_work() noexcept {
  if (sleepers_.load(std::memory_order_seq_cst) != 0) {
    epoch_.fetch_add(1, std::memory_order_seq_cst);
    futex_wake_one(epoch_);
  }
  if (help_sleepers.load(std::memory_order_seq_cst) != 0) notify_helpers();
}

Job* PoolCore::find_job(WorkStealingDeque* own) noexcept {
  if (own != nullptr) {
    if (Job* job = own->pop()) return job;
  }
  if (overflow_count_.load(std::memory_order_relaxed) != 0) {
    std::lock_guard lock(overflow_mutex_);
    if (!overflow_.empty()) {
      Job* job = overflow_.front();
      overflow_.pop_front();
      overflow_count_.fetch_sub(1, std::memory_order_relaxed);
      return job;
    }
  }
  return steal(own);
}

Job* PoolCore::steal(const WorkStealingDeque* own) noexcept {
  const std::size_t workers = deques_.size();
  const std::size_t total = workers + external_used_.load(std::memory_order_acquire);
  std::size_t i = next_random() % total;
  for (std::size_t k = 0; k < total; ++k, i = (i + 1 == total ? 0 : i + 1)) {
    WorkStealingDeque& victim = i < workers ? *deques_[i] : external_[i - workers].deque;
    if (&victim == own) continue;
    if (Job* job = victim.steal()) {
      // More may be waiting where this came from: let a sleeping worker look too.
      if (sleepers_.load(std::memory_order_relaxed) != 0 && victim.maybe_nonempty()) {
        wake_for_new_work();
      }
      return job;
    }
  }
  return nullptr;
}

bool PoolCore::has_work() const noexcept {
  if (overflow_count_.load(std::memory_order_seq_cst) != 0) return true;
  for (const auto& d : deques_) {
    if (d->maybe_nonempty()) return true;
  }
  const std::size_t used = external_used_.load(std::memory_order_acquire);
  for (std::size_t i = 0; i < used; ++i) {
    if (external_[i].deque.maybe_nonempty()) return true;
  }
  return false;
}

Job* PoolCore::spin_for_job(WorkStealingDeque* own) noexcept {
  for (int round = 0; round < kSpinRounds; ++round) {
    for (int i = 0; i < (1 << round); ++i) cpu_relax();
    if (Job* job = find_job(own)) return job;
  }
  for (int round = 0; round < kYieldRounds; ++round) {
    std::this_thread::yield();
    if (Job* job = find_job(own)) return job;
  }
  return nullptr;
}

void PoolCore::execute(Job* job) noexcept {
  if (cancelling_.load(std::memory_order_relaxed)) {
    job->discard();
  } else {
    job->run(stop_token_);
  }
}

void PoolCore::worker_main(std::size_t index) {
  WorkStealingDeque* own = deques_[index].get();
  this_worker = {this, own};
  const std::string thread_name = "strand-" + std::to_string(index);
  pthread_setname_np(pthread_self(), thread_name.substr(0, 15).c_str());
  for (;;) {
    Job* job = find_job(own);
    if (job == nullptr) job = spin_for_job(own);
    if (job != nullptr) {
      execute(job);
      continue;
    }
    if (stopping_.load(std::memory_order_seq_cst) && !has_work()) break;
    const std::uint32_t seen = epoch_.load(std::memory_order_seq_cst);
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    if (!has_work() && !stopping_.load(std::memory_order_seq_cst)) futex_wait(epoch_, seen);
    sleepers_.fetch_sub(1, std::memory_order_seq_cst);
  }
  this_worker = {};
}

void PoolCore::help(const HelpWaitable& w,
                    std::optional<std::chrono::steady_clock::time_point> deadline) {
  WorkStealingDeque* own = own_deque();
  while (!w.is_done()) {
    if (deadline && std::chrono::steady_clock::now() >= *deadline) return;
    if (Job* job = find_job(own)) {
      execute(job);
      continue;
    }
    for (int i = 0; i < kHelpSpin && !w.is_done(); ++i) cpu_relax();
    if (w.is_done()) return;
    const std::uint32_t seen = help_epoch.load(std::memory_order_seq_cst);
    help_sleepers.fetch_add(1, std::memory_order_seq_cst);
    if (w.arm_helper_wake() && !has_work()) {
      if (deadline) {
        futex_wait_until(help_epoch, seen, *deadline);
      } else {
        futex_wait(help_epoch, seen);
      }
    }
    help_sleepers.fetch_sub(1, std::memory_order_seq_cst);
  }
}

void PoolCore::shutdown(ShutdownMode mode) {
  if (is_current_worker()) {
    throw std::logic_error("strand: " + name_ +
                           ": shutdown() called from one of its own workers, which would wait "
                           "for itself");
  }
  accepting_.store(false, std::memory_order_seq_cst);
  if (mode == ShutdownMode::cancel) {
    cancelling_.store(true, std::memory_order_seq_cst);
    stop_.request_stop();
  }
  std::lock_guard lock(shutdown_mutex_);
  // An outside thread that saw accepting_ still true is at most one push away from done.
  while (submitting_.load(std::memory_order_seq_cst) != 0) std::this_thread::yield();
  stopping_.store(true, std::memory_order_seq_cst);
  epoch_.fetch_add(1, std::memory_order_seq_cst);
  futex_wake_all(epoch_);
  notify_helpers();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

bool pool_push(PoolCore& pool, Job* job) noexcept {
  return pool.push(job);
}
const std::string& pool_name(const PoolCore& pool) noexcept {
  return pool.name();
}

bool help_until(const HelpWaitable& w,
                std::optional<std::chrono::steady_clock::time_point> deadline) noexcept {
  PoolCore* core = this_worker.core;
  if (core == nullptr) return false;
  core->help(w, deadline);
  return true;
}

void help_pool_until(PoolCore& pool, const HelpWaitable& w) {
  pool.help(w, std::nullopt);
}

void notify_helpers() noexcept {
  if (help_sleepers.load(std::memory_order_seq_cst) == 0) return;
  help_epoch.fetch_add(1, std::memory_order_seq_cst);
  futex_wake_all(help_epoch);
}

}  // namespace detail

ThreadPool::ThreadPool() : ThreadPool(Options{}) {}
ThreadPool::ThreadPool(std::size_t threads) : ThreadPool(Options{.threads = threads}) {}
ThreadPool::ThreadPool(Options options)
    : core_(std::make_shared<detail::PoolCore>(options.threads, std::move(options.name))) {
  core_->start();
}

ThreadPool::~ThreadPool() {
  if (core_ && !core_->is_current_worker()) core_->shutdown(ShutdownMode::drain);
}

void ThreadPool::shutdown(ShutdownMode mode) {
  core_->shutdown(mode);
}
std::size_t ThreadPool::size() const noexcept {
  return core_->size();
}
bool ThreadPool::accepting() const noexcept {
  return core_->accepting();
}
const std::string& ThreadPool::name() const noexcept {
  return core_->name();
}
bool ThreadPool::is_worker_thread() const noexcept {
  return core_->is_current_worker();
}

ThreadPool& default_pool() {
  // Never destroyed: a task still running while the program exits must not meet a dead pool.
  static ThreadPool* pool = std::make_unique<ThreadPool>(
                                ThreadPool::Options{.threads = 0, .name = "strand::default_pool()"})
                                .release();
  return *pool;
}

std::size_t hardware_threads() noexcept {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return static_cast<std::size_t>(n);
  }
  return std::max(1U, std::thread::hardware_concurrency());
}

}  // namespace strand
