// What the library does around fork(): its own locks are taken before the fork and released on
// both sides after it, so a child never inherits a lock held by a thread that does not exist there;
// and the child forgets the default pool, whose workers did not survive the fork.
#pragma once

namespace strand::detail {

void lock_error_reporter() noexcept;
void unlock_error_reporter() noexcept;
void lock_job_orphans() noexcept;
void unlock_job_orphans() noexcept;
void lock_default_pool() noexcept;
void unlock_default_pool() noexcept;
// In the child: the next default_pool() makes a new pool (the old one is leaked on purpose: its
// threads are gone and its locks may be in any state).
void forget_default_pool() noexcept;

// Registers the pthread_atfork handlers, once.
void install_fork_handlers() noexcept;

}  // namespace strand::detail
