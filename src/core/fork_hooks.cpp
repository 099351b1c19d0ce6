#include "fork_hooks.hpp"

#include <pthread.h>

#include <condition_variable>
#include <mutex>
#include <new>

#include "strand/detail/own_thread.hpp"

namespace strand::detail {
namespace {

// ForkQuiet's state: how many operations hold it, and whether a fork waits for them. A mutex and a
// condition variable rather than an rwlock: a child must release what its parent's thread took, and
// a writer-preferring rwlock refuses an unlock from another thread id (the child's).
struct Quiet {
  std::mutex mutex;
  std::condition_variable idle;  // active reached 0, or the fork is over
  int active = 0;
  bool fork_pending = false;
};
Quiet& quiet() noexcept {
  static auto* q = new Quiet;  // never destroyed: operations may run during static destruction
  return *q;
}

// Lock order: quiet (waits for operations that must not be split by a fork), default pool, error
// reporter, job orphans, thread cache (none of these is taken while holding another anywhere else).
void prepare() noexcept {
  auto& q = quiet();
  q.mutex.lock();  // held until after the fork, on both sides
  q.fork_pending = true;
  while (q.active > 0) {
    std::unique_lock lock(q.mutex, std::adopt_lock);
    q.idle.wait(lock);
    lock.release();
  }
  lock_default_pool();
  lock_error_reporter();
  lock_job_orphans();
  lock_thread_cache();
}

void parent() noexcept {
  unlock_thread_cache();
  unlock_job_orphans();
  unlock_error_reporter();
  unlock_default_pool();
  auto& q = quiet();
  q.fork_pending = false;
  q.mutex.unlock();
  q.idle.notify_all();
}

void child() noexcept {
  forget_thread_cache();
  unlock_thread_cache();
  unlock_job_orphans();
  unlock_error_reporter();
  forget_default_pool();
  unlock_default_pool();
  auto& q = quiet();
  q.fork_pending = false;
  q.active = 0;
  // The parent's waiters are not in the child, but the condition variable may still count them.
  new (&q.idle) std::condition_variable;
  q.mutex.unlock();
}

}  // namespace

ForkQuiet::ForkQuiet() noexcept {
  install_fork_handlers();
  auto& q = quiet();
  std::unique_lock lock(q.mutex);
  q.idle.wait(lock, [&] { return !q.fork_pending; });  // a waiting fork goes first
  ++q.active;
}

ForkQuiet::~ForkQuiet() {
  auto& q = quiet();
  std::lock_guard lock(q.mutex);
  if (--q.active == 0) q.idle.notify_all();
}

void install_fork_handlers() noexcept {
  static std::once_flag once;
  std::call_once(once, [] { pthread_atfork(&prepare, &parent, &child); });
}

}  // namespace strand::detail
