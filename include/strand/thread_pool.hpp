// strand/thread_pool.hpp — ThreadPool: a work-stealing pool sized to the machine.
//
//   strand::ThreadPool pool;                        // one worker per core
//   auto h = pool.submit([](int x) { return x * 2; }, 21);
//   auto s = pool.submit([](std::stop_token st) { while (!st.stop_requested()) work(); });
//   s.cancel();                                      // the task sees its stop_token requested
//   pool.post([] { fire_and_forget(); });            // no handle; exceptions go to the reporter
//
// Each worker owns a deque: it pushes and pops its own work at one end (LIFO, cache-warm) and other
// workers steal from the other end (FIFO). A thread that is not a worker gets a deque of its own
// the first time it submits, so submitting from outside does not contend on one shared queue. A
// worker that waits on a Handle or TaskGroup keeps running queued work, so a task may wait for
// tasks it submitted even on a pool of one worker. Idle workers spin briefly, then sleep on a
// futex: an idle pool uses no CPU.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <stop_token>
#include <string>
#include <type_traits>
#include <utility>

#include "strand/detail/job.hpp"
#include "strand/handle.hpp"

namespace strand {

// What shutdown() does with work that has not started yet.
enum class ShutdownMode {
  drain,   // run everything already submitted (and what it submits), then stop
  cancel,  // queued tasks never start (their handles read cancelled); running tasks that take a
           // std::stop_token see it requested
};

namespace detail {

// Calls f with a std::stop_token first if it takes one.
template <class F, class... A>
inline constexpr bool takes_stop_token_v = std::is_invocable_v<F&, std::stop_token, A&...>;

template <class F, class... A>
decltype(auto) invoke_maybe_stoppable(F& f, const std::stop_token& token, A&... a) {
  if constexpr (takes_stop_token_v<F, A...>) {
    return std::invoke(f, token, a...);
  } else {
    return std::invoke(f, a...);
  }
}

template <class F, class... A>
struct stoppable_result {
  using type = std::invoke_result_t<F&, std::stop_token, A&...>;
};
template <class F, class... A>
requires(!takes_stop_token_v<F, A...>) struct stoppable_result<F, A...> {
  using type = std::invoke_result_t<F&, A&...>;
};

template <class F, class... A>
using submit_result_t = std::remove_cvref_t<typename stoppable_result<F, A...>::type>;

}  // namespace detail

class ThreadPool {
 public:
  struct Options {
    std::size_t threads = 0;           // 0: one per core this process may run on
    std::string name = "strand pool";  // used in error messages and thread names
  };

  ThreadPool();
  explicit ThreadPool(std::size_t threads);
  explicit ThreadPool(Options options);
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  // Drains (see ShutdownMode::drain) unless shutdown() was called already.
  ~ThreadPool();

  // Runs f(args...) (or f(stop_token, args...)) on a worker. Arguments are copied or moved into
  // the task, as std::thread does. Throws strand::ExecutorShutDown once the pool is shut down.
  template <class F, class... Args>
  auto submit(F&& f, Args&&... args) {
    static_assert(
        std::is_invocable_v<std::decay_t<F>&, std::decay_t<Args>&...> ||
            std::is_invocable_v<std::decay_t<F>&, std::stop_token, std::decay_t<Args>&...>,
        "strand::ThreadPool::submit: the function cannot be called with these arguments "
        "(optionally after a leading std::stop_token)");
    using R = detail::submit_result_t<std::decay_t<F>, std::decay_t<Args>...>;
    constexpr bool stoppable = detail::takes_stop_token_v<std::decay_t<F>, std::decay_t<Args>...>;
    auto body = [f = std::decay_t<F>(std::forward<F>(f)),
                 ... a = std::decay_t<Args>(std::forward<Args>(args))](
                    detail::State<R>& state, const std::stop_token& token) mutable noexcept {
      detail::complete_with(state,
                            [&]() -> R { return detail::invoke_maybe_stoppable(f, token, a...); });
    };
    return submit_body<R>(std::move(body), stoppable);
  }

  // Runs f() (or f(stop_token)) on a worker with no handle. An exception goes to strand's error
  // reporter. Throws strand::ExecutorShutDown once the pool is shut down.
  template <class F>
  void post(F&& f) {
    using Job = detail::DetachedJob<std::decay_t<F>>;
    auto job = std::make_unique<Job>(std::forward<F>(f));
    if (!detail::pool_push(*core_, job.get())) throw ExecutorShutDown(detail::pool_name(*core_));
    job.release();  // the queue owns it now; it frees itself after running
  }

  // Stops accepting work from outside the pool, deals with queued work as `mode` says, and joins
  // the workers. Idempotent. Throws std::logic_error if called from one of the pool's own workers.
  void shutdown(ShutdownMode mode = ShutdownMode::drain);

  [[nodiscard]] std::size_t size() const noexcept;
  // How many workers are asleep waiting for work right now: a snapshot, for monitoring and tests.
  [[nodiscard]] std::size_t idle_workers() const noexcept;
  [[nodiscard]] bool accepting() const noexcept;
  [[nodiscard]] const std::string& name() const noexcept;
  // True on one of this pool's worker threads.
  [[nodiscard]] bool is_worker_thread() const noexcept;

  // For strand's own layers: queues `body(state, stop_token)`, which must complete the state.
  template <class R, class Body>
  Handle<R> submit_body(Body body, bool stoppable) {
    auto* job = detail::make_state<detail::StatefulJob<R, Body>>(std::move(body), stoppable);
    auto handle = Handle<R>(detail::StateRef<detail::State<R>>::adopt(job));
    if (!detail::pool_push(*core_, job)) {
      job->discard();  // drops the queue's reference; the handle's goes with `handle`
      throw ExecutorShutDown(detail::pool_name(*core_));
    }
    return handle;
  }

  // For strand's own layers.
  [[nodiscard]] detail::PoolCore& core() const noexcept { return *core_; }

 private:
  std::shared_ptr<detail::PoolCore> core_;
};

// The process-wide pool (one worker per core), created on first use. It is never destroyed, so
// tasks still running at exit never touch a destroyed pool.
ThreadPool& default_pool();

// The number of cores this process may run on (sched_getaffinity), at least 1.
[[nodiscard]] std::size_t hardware_threads() noexcept;

}  // namespace strand
