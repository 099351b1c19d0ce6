#include "strand/thread_pool.hpp"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <utility>

#include "asymmetric_barrier.hpp"
#include "cpu_relax.hpp"
#include "fork_hooks.hpp"
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
// How long a sleeping worker or helper trusts that pushes see it before it pays for a heavy
// barrier (see nap_then_sleep).
constexpr std::chrono::microseconds kNap{500};

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

// Sleeps on `word` while it holds `seen`, if `idle()` (the caller has announced itself as a
// sleeper), until `deadline` if there is one. A push that has_work() misses may also have missed
// the announcement (light pushes: see asymmetric_barrier.hpp). Only a heavy barrier rules that
// out, and it interrupts the threads that are busy, so it is paid only after a whole nap with no
// wake: a short idle spell (the usual kind) costs the busy threads nothing, and a job caught in
// that race waits a nap at most.
template <class Idle>
void nap_then_sleep(const std::atomic<std::uint32_t>& word, std::uint32_t seen,
                    std::optional<std::chrono::steady_clock::time_point> deadline,
                    Idle idle) noexcept {
  if (!idle()) return;
  const auto nap_end = std::chrono::steady_clock::now() + kNap;
  if (deadline && *deadline <= nap_end) {
    futex_wait_until(word, seen, *deadline);
    return;
  }
  if (futex_wait_until(word, seen, nap_end) || word.load(std::memory_order_seq_cst) != seen) {
    return;  // woken (or spuriously): the caller looks again
  }
  heavy_barrier();
  if (!idle()) return;
  if (deadline) {
    futex_wait_until(word, seen, *deadline);
  } else {
    futex_wait(word, seen);
  }
}

// How many idle workers may search (spin) for work at once. Go's rule is half of them, the rest
// sleeping until woken; but at least two: on a pool of two, one searcher left the other asleep
// whenever a burst of work began, to join a futex wake later (tens of microseconds on a VM), and
// fib(27)'s rounds fell in two groups (median 172 us against 127 us with both searching).
std::size_t max_searching_for(std::size_t workers) noexcept {
  return std::min(workers, std::max<std::size_t>(2, workers / 2));
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
    : name_(std::move(name)),
      id_(next_pool_id.fetch_add(1, std::memory_order_relaxed)),
      max_searching_(max_searching_for(threads == 0 ? hardware_threads() : threads)) {
  if (threads == 0) threads = hardware_threads();
  enable_light_pushes();
  deques_.reserve(threads);
  for (std::size_t i = 0; i < threads; ++i)
    deques_.push_back(std::make_unique<WorkStealingDeque>());
}

PoolCore::~PoolCore() {
  // Normally empty by now; a job left over never runs, but its handle must still finish.
  cancelling_.store(true);
  drain_leftovers();
}

void PoolCore::start() {
  threads_.reserve(deques_.size());
  for (std::size_t i = 0; i < deques_.size(); ++i) {
    // Each worker keeps the core alive, so a pool destroyed from one of its own tasks (which
    // cannot join itself) is not freed under its workers' feet.
    threads_.emplace_back([self = shared_from_this(), i] { self->worker_main(i); });
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

PoolCore::ExternalSlot* PoolCore::external_slot() noexcept {
  if (this_thread_slot.pool_id == id_) return this_thread_slot.slot;
  this_thread_slot.release();
  this_thread_slot.pool_id = id_;
  this_thread_slot.pool = weak_from_this();
  for (std::size_t i = 0; i < kExternalSlots; ++i) {
    auto& slot = external_[i];
    if (!slot.owned.load(std::memory_order_relaxed) &&
        !slot.owned.exchange(true, std::memory_order_acquire)) {
      std::size_t used = external_used_.load(std::memory_order_seq_cst);
      while (used < i + 1 &&
             !external_used_.compare_exchange_weak(used, i + 1, std::memory_order_seq_cst)) {
      }
      this_thread_slot.slot = &slot;
      return &slot;
    }
  }
  return nullptr;  // all slots taken: this thread uses the shared overflow queue
}

bool PoolCore::push(Job* job) noexcept {
  if (this_worker.core == this) {
    // A worker may always add work, even while the pool drains: that work is part of the drain.
    try {
      this_worker.deque->push(job, light_pushes());
    } catch (...) {  // out of memory growing the deque
      return false;
    }
    light_barrier();
  } else if (!push_external(job)) {
    return false;
  }
  // The loads below see a sleeper that announced itself, or it sees the job (see sleep()).
  wake_for_new_work();
  if (help_sleepers.load(std::memory_order_seq_cst) != 0) notify_helpers();
  return true;
}

bool PoolCore::push_external(Job* job) noexcept {
  ExternalSlot* slot = external_slot();
  if (slot == nullptr) {
    std::lock_guard lock(overflow_mutex_);
    if (!accepting_.load(std::memory_order_seq_cst)) return false;
    try {
      overflow_.push_back(job);
    } catch (...) {
      return false;
    }
    overflow_count_.fetch_add(1, std::memory_order_seq_cst);
    return true;
  }
  if (!accepting_.load(std::memory_order_relaxed)) return false;  // the common refusal, cheaply
  try {
    slot->deque.push(job, light_pushes());
  } catch (...) {
    return false;
  }
  light_barrier();
  // Push first, check after: shutdown closes accepting_, then (after a heavy barrier) drains the
  // deques, so either it sees this job or this check sees it closed; then take the job back
  // unless a drain already took it (and will run or discard it).
  if (accepting_.load(std::memory_order_seq_cst)) return true;
  return slot->deque.pop() == nullptr;
}

void PoolCore::wake_for_new_work() noexcept {
  if (searching_.load(std::memory_order_seq_cst) != 0) return;  // a searcher will find the job
  if (sleepers_.load(std::memory_order_seq_cst) == 0) return;   // nobody to wake
  if (wake_pending_.load(std::memory_order_relaxed) ||
      wake_pending_.exchange(true, std::memory_order_acq_rel)) {
    return;  // a woken worker is on its way and will pass the baton if more work waits
  }
  epoch_.fetch_add(1, std::memory_order_seq_cst);
  // Nobody was asleep after all (the sleeper saw the new epoch first): nobody will clear the flag.
  if (futex_wake_one(epoch_) == 0) wake_pending_.store(false, std::memory_order_release);
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
    if (Job* job = victim.steal()) return job;
  }
  return nullptr;
}

bool PoolCore::has_work() const noexcept {
  if (overflow_count_.load(std::memory_order_seq_cst) != 0) return true;
  for (const auto& d : deques_) {
    if (d->maybe_nonempty()) return true;
  }
  const std::size_t used = external_used_.load(std::memory_order_seq_cst);  // pairs with a push
  for (std::size_t i = 0; i < used; ++i) {
    if (external_[i].deque.maybe_nonempty()) return true;
  }
  return false;
}

Job* PoolCore::search(WorkStealingDeque* own) noexcept {
  flush_group_completions();
  std::uint32_t n = searching_.load(std::memory_order_relaxed);
  do {
    if (n >= max_searching_) return nullptr;  // enough workers are looking already
  } while (!searching_.compare_exchange_weak(n, n + 1, std::memory_order_seq_cst,
                                             std::memory_order_relaxed));
  Job* job = nullptr;
  for (int round = 0; round < kSpinRounds && job == nullptr; ++round) {
    for (int i = 0; i < (1 << round); ++i) cpu_relax();
    job = find_job(own);
  }
  for (int round = 0; round < kYieldRounds && job == nullptr; ++round) {
    std::this_thread::yield();
    job = find_job(own);
  }
  const std::uint32_t searchers = searching_.fetch_sub(1, std::memory_order_seq_cst);
  // The last searcher to find work hands the search on, so parallelism ramps up with the load.
  if (job != nullptr && searchers == 1 && has_work()) wake_for_new_work();
  return job;
}

void PoolCore::sleep() noexcept {
  flush_group_completions();
  flush_job_frees();  // blocks freed for their owners should not idle here with this thread
  const std::uint32_t seen = epoch_.load(std::memory_order_seq_cst);
  sleepers_.fetch_add(1, std::memory_order_seq_cst);
  nap_then_sleep(epoch_, seen, std::nullopt,
                 [&] { return !has_work() && !stopping_.load(std::memory_order_seq_cst); });
  sleepers_.fetch_sub(1, std::memory_order_seq_cst);
  wake_pending_.store(false, std::memory_order_release);  // the wake (if it was ours) arrived
}

void PoolCore::execute(Job* job) noexcept {
  flush_group_completions(job->batch_key());
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
  bool woken = false;
  for (;;) {
    Job* job = find_job(own);
    if (job == nullptr) job = search(own);
    if (job != nullptr) {
      // A worker just woken was sent for the first of possibly many new jobs, while pushes held
      // back their own wakes: if more is waiting, wake the next sleeper before running this one.
      if (std::exchange(woken, false) && has_work()) wake_for_new_work();
      execute(job);
      continue;
    }
    if (stopping_.load(std::memory_order_seq_cst) && !has_work()) break;
    sleep();
    woken = true;
  }
  flush_group_completions();
  this_worker = {};
}

void PoolCore::help(const HelpWaitable& w,
                    std::optional<std::chrono::steady_clock::time_point> deadline) {
  for (;;) {
    // A count this thread holds back may be all that keeps `w` from done: hand it over before
    // asking, or we would go on to run unrelated work for a group that has finished. (Every
    // return below follows this flush with no job run since, so the caller never inherits one.)
    flush_group_completions();
    if (w.is_done()) return;
    if (deadline && std::chrono::steady_clock::now() >= *deadline) return;
    // Asked afresh each round: a job run here may have moved this thread to another pool's slot,
    // and a slot given up may already belong to another thread.
    WorkStealingDeque* own = own_deque();
    if (Job* job = find_job(own)) {
      execute(job);
      continue;
    }
    for (int i = 0; i < kHelpSpin && !w.is_done(); ++i) cpu_relax();
    if (w.is_done()) return;
    const std::uint32_t seen = help_epoch.load(std::memory_order_seq_cst);
    help_sleepers.fetch_add(1, std::memory_order_seq_cst);
    nap_then_sleep(help_epoch, seen, deadline, [&] { return w.arm_helper_wake() && !has_work(); });
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
  heavy_barrier();  // a push the drain below misses sees accepting_ closed (see push_external)
  if (mode == ShutdownMode::cancel) {
    cancelling_.store(true, std::memory_order_seq_cst);
    stop_.request_stop();
  }
  std::lock_guard lock(shutdown_mutex_);
  stopping_.store(true, std::memory_order_seq_cst);
  epoch_.fetch_add(1, std::memory_order_seq_cst);
  futex_wake_all(epoch_);
  notify_helpers();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
  drain_leftovers();
}

void PoolCore::abandon() noexcept {
  accepting_.store(false, std::memory_order_seq_cst);
  heavy_barrier();
  std::lock_guard lock(shutdown_mutex_);
  stopping_.store(true, std::memory_order_seq_cst);
  epoch_.fetch_add(1, std::memory_order_seq_cst);
  futex_wake_all(epoch_);
  notify_helpers();
  for (auto& t : threads_) t.detach();
  threads_.clear();
}

void PoolCore::drain_leftovers() noexcept {
  // An outside push that raced with the workers leaving: run it here (or discard it, if
  // cancelling), so that its handle still finishes.
  // find_job can come back empty-handed after losing a race for a job that another thread then
  // takes; keep going while anything is left.
  while (has_work()) {
    if (Job* job = find_job(nullptr)) execute(job);
  }
  flush_group_completions();
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
  if (!core_) return;
  if (core_->is_current_worker()) {
    core_->abandon();  // a worker cannot join itself: the workers drain, then end on their own
  } else {
    core_->shutdown(ShutdownMode::drain);
  }
}

void ThreadPool::shutdown(ShutdownMode mode) {
  core_->shutdown(mode);
}
std::size_t ThreadPool::size() const noexcept {
  return core_->size();
}
std::size_t ThreadPool::idle_workers() const noexcept {
  return core_->sleeping();
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

namespace {
// The default pool is made on first use and never destroyed: a task still running while the program
// exits must not meet a dead pool. A forked child forgets it (see fork_hooks.hpp).
std::atomic<ThreadPool*> the_default_pool{nullptr};
std::mutex& default_pool_mutex() {
  static std::mutex m;
  return m;
}
}  // namespace

namespace detail {
void lock_default_pool() noexcept {
  default_pool_mutex().lock();
}
void unlock_default_pool() noexcept {
  default_pool_mutex().unlock();
}
void forget_default_pool() noexcept {
  the_default_pool.store(nullptr, std::memory_order_relaxed);
}
}  // namespace detail

ThreadPool& default_pool() {
  if (ThreadPool* pool = the_default_pool.load(std::memory_order_acquire)) return *pool;
  std::lock_guard lock(default_pool_mutex());
  ThreadPool* pool = the_default_pool.load(std::memory_order_relaxed);
  if (pool == nullptr) {
    pool = std::make_unique<ThreadPool>(
               ThreadPool::Options{.threads = 0, .name = "strand::default_pool()"})
               .release();
    the_default_pool.store(pool, std::memory_order_release);
  }
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
