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

// Held while an operation holds something a forked child would inherit half-taken: a store's file
// lock (an flock belongs to the open file description, which the child shares), an SQLite call
// (SQLite's own global mutexes). fork() waits until none is held, and a waiting fork goes before
// new holders, so a busy store cannot starve a fork. Not recursive: take it once, at the outermost
// operation.
class ForkQuiet {
 public:
  ForkQuiet() noexcept;
  ~ForkQuiet();
  ForkQuiet(const ForkQuiet&) = delete;
  ForkQuiet& operator=(const ForkQuiet&) = delete;
};

}  // namespace strand::detail
