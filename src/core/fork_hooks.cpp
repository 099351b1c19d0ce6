#include "fork_hooks.hpp"

#include <pthread.h>

#include <mutex>

namespace strand::detail {
namespace {

// Lock order: default pool, error reporter, job orphans (none of them is taken while holding
// another anywhere else, so any fixed order works).
void prepare() noexcept {
  lock_default_pool();
  lock_error_reporter();
  lock_job_orphans();
}

void parent() noexcept {
  unlock_job_orphans();
  unlock_error_reporter();
  unlock_default_pool();
}

void child() noexcept {
  unlock_job_orphans();
  unlock_error_reporter();
  forget_default_pool();
  unlock_default_pool();
}

}  // namespace

void install_fork_handlers() noexcept {
  static std::once_flag once;
  std::call_once(once, [] { pthread_atfork(&prepare, &parent, &child); });
}

}  // namespace strand::detail
