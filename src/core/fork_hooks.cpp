#include "fork_hooks.hpp"

#include <pthread.h>

#include <mutex>

namespace strand::detail {
namespace {

void init_quiet(pthread_rwlock_t* lock) noexcept {
  pthread_rwlockattr_t attr;
  pthread_rwlockattr_init(&attr);
  pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init(lock, &attr);
  pthread_rwlockattr_destroy(&attr);
}

pthread_rwlock_t* quiet() noexcept {
  static pthread_rwlock_t* lock = [] {
    static pthread_rwlock_t l;
    init_quiet(&l);
    return &l;
  }();
  return lock;
}

// Lock order: quiet (waits for operations that must not be split by a fork), default pool, error
// reporter, job orphans (none of these is taken while holding another anywhere else).
void prepare() noexcept {
  pthread_rwlock_wrlock(quiet());
  lock_default_pool();
  lock_error_reporter();
  lock_job_orphans();
}

void parent() noexcept {
  unlock_job_orphans();
  unlock_error_reporter();
  unlock_default_pool();
  pthread_rwlock_unlock(quiet());
}

void child() noexcept {
  unlock_job_orphans();
  unlock_error_reporter();
  forget_default_pool();
  unlock_default_pool();
  // Not unlocked: the child's thread has another thread id than the one that write-locked it, and
  // a writer-preferring rwlock checks that. No other thread exists here, so start it afresh.
  init_quiet(quiet());
}

}  // namespace

ForkQuiet::ForkQuiet() noexcept {
  install_fork_handlers();
  pthread_rwlock_rdlock(quiet());
}

ForkQuiet::~ForkQuiet() {
  pthread_rwlock_unlock(quiet());
}

void install_fork_handlers() noexcept {
  static std::once_flag once;
  std::call_once(once, [] { pthread_atfork(&prepare, &parent, &child); });
}

}  // namespace strand::detail
