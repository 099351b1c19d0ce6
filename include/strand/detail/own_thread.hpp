// Running a call on a thread of its own (the thread target), without paying for a new thread each
// time: a thread whose call has returned waits a while for the next one, as a cached thread pool
// does. A call never waits for another call: when no thread is idle, a new one starts.
#pragma once

#include <cstddef>
#include <memory>
#include <type_traits>
#include <utility>

namespace strand::detail {

// A call handed to run_on_own_thread.
class ThreadCall {
 public:
  virtual ~ThreadCall() = default;
  virtual void run() noexcept = 0;
};

template <class F>
class ThreadCallOf final : public ThreadCall {
 public:
  explicit ThreadCallOf(F f) : f_(std::move(f)) {}
  void run() noexcept override { f_(); }

 private:
  F f_;
};

// Runs `call` on an idle thread left by an earlier call, or on a new (detached) thread. A thread
// idle for kIdleLifetime ends. The call and everything it captures is destroyed on that thread
// before the thread is idle again.
void run_on_own_thread(std::unique_ptr<ThreadCall> call);

template <class F>
void run_on_own_thread(F f) {
  static_assert(std::is_nothrow_invocable_v<F&>,
                "strand: a call run on its own thread must not throw (catch inside it)");
  run_on_own_thread(std::unique_ptr<ThreadCall>(std::make_unique<ThreadCallOf<F>>(std::move(f))));
}

// How many threads wait for a call right now: a snapshot, for tests.
[[nodiscard]] std::size_t idle_own_threads() noexcept;

// In a forked child: the parent's idle threads did not survive the fork.
void lock_thread_cache() noexcept;
void unlock_thread_cache() noexcept;
void forget_thread_cache() noexcept;

}  // namespace strand::detail
