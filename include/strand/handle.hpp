// strand/handle.hpp — Handle<T>: the one way to watch, wait for and cancel work.
//
//   strand::Handle<int> h = strand::default_pool().submit([] { return 6 * 7; });
//   h.status();        // queued, running, completed, failed or cancelled
//   h.get();           // blocks; returns the value or rethrows the task's own exception
//   h.get(2s);         // ... or throws strand::Timeout
//   h.cancel();        // true if the task will not complete normally
//   h.then([](int v) { return v + 1; });   // a Handle<int> for the continuation
//
// A Handle is a cheap, copyable, thread-safe reference to shared state; copies watch the same task.
// It outlives whatever produced it (runner, thread, pool). A wait spins for about a microsecond,
// then sleeps on a futex; a pool worker that waits runs other queued work instead, so a task may
// wait for tasks it submitted to its own pool, even a pool of one worker.
#pragma once

#include <chrono>
#include <concepts>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "strand/detail/state.hpp"
#include "strand/errors.hpp"
#include "strand/status.hpp"

namespace strand {

template <class T = void>
class Handle;

namespace detail {

template <class T>
struct is_handle : std::false_type {};
template <class T>
struct is_handle<Handle<T>> : std::true_type {};

// The value type of `f(value)` (or `f()` for void), as a continuation produces it.
template <class F, class T>
struct then_result {
  using type = std::remove_cvref_t<std::invoke_result_t<F&, const T&>>;
};
template <class F>
struct then_result<F, void> {
  using type = std::remove_cvref_t<std::invoke_result_t<F&>>;
};

// Owns a reference to a state that some closure is meant to complete; cancels it if the closure is
// destroyed without having run (moved-from guards do nothing).
template <class U>
class CancelUnlessRun {
 public:
  explicit CancelUnlessRun(StateRef<State<U>> state) noexcept : state_(std::move(state)) {}
  CancelUnlessRun(CancelUnlessRun&& other) noexcept
      : state_(std::move(other.state_)), ran_(other.ran_) {}
  CancelUnlessRun& operator=(CancelUnlessRun&&) = delete;
  ~CancelUnlessRun() {
    // Destroyed while an exception unwinds: the executor refused the closure by throwing, and
    // whoever called it records that exception instead (see then_on).
    if (state_ && !ran_ && std::uncaught_exceptions() == 0) state_->cancel();
  }
  // Marks the closure as run and gives the state to complete.
  const StateRef<State<U>>& run() noexcept {
    ran_ = true;
    return state_;
  }

 private:
  StateRef<State<U>> state_;
  bool ran_ = false;
};

// Completes `target` with what `f` returns (or throws).
template <class T, class F>
void complete_with(State<T>& target, F&& f) noexcept {
  try {
    if constexpr (std::is_void_v<T>) {
      std::forward<F>(f)();
      target.set_value();
    } else {
      target.set_value(std::forward<F>(f)());
    }
  } catch (...) {
    target.set_exception(std::current_exception());
  }
}

}  // namespace detail

template <class T>
class Handle {
  static_assert(!std::is_reference_v<T>,
                "strand::Handle<T>: T must not be a reference; return a pointer or a "
                "std::reference_wrapper instead");
  static_assert(!std::is_const_v<T> && !std::is_volatile_v<T>,
                "strand::Handle<T>: T must not be cv-qualified");

 public:
  using value_type = T;
  using state_type = detail::State<T>;

  // An empty handle: valid() is false and every other call throws strand::InvalidHandle.
  Handle() noexcept = default;
  explicit Handle(detail::StateRef<state_type> state) noexcept : state_(std::move(state)) {}

  [[nodiscard]] bool valid() const noexcept { return static_cast<bool>(state_); }

  [[nodiscard]] Status status() const { return checked().status(); }
  // True once the task is completed, failed or cancelled.
  [[nodiscard]] bool ready() const { return checked().ready(); }

  void wait() const { checked().wait(); }
  // True if the task finished within `timeout`.
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> timeout) const {
    return wait_until(std::chrono::steady_clock::now() + ceil_ns(timeout));
  }
  template <class Clock, class Duration>
  bool wait_until(std::chrono::time_point<Clock, Duration> deadline) const {
    const auto& s = checked();
    if constexpr (std::is_same_v<Clock, std::chrono::steady_clock>) {
      return s.wait_until(
          std::chrono::time_point_cast<std::chrono::steady_clock::duration>(deadline));
    } else {
      return s.wait_until(std::chrono::steady_clock::now() +
                          std::chrono::ceil<std::chrono::nanoseconds>(deadline - Clock::now()));
    }
  }

  // Blocks until the task is finished. Returns its value (a reference into the shared state, valid
  // while any copy of this handle lives), rethrows its exception as the original type, or throws
  // strand::Cancelled.
  decltype(auto) get() const {
    const auto& s = checked();
    s.wait();
    return result_of(s);
  }

  // As get(), but throws strand::Timeout if the task is not finished within `timeout`.
  template <class Rep, class Period>
  decltype(auto) get(std::chrono::duration<Rep, Period> timeout) const {
    if (!wait_for(timeout)) throw Timeout(ceil_ns(timeout));
    return result_of(*state_);
  }

  // Never blocks. An empty optional while the task is unfinished; otherwise as get(). For
  // Handle<void>, true once completed.
  auto try_get() const {
    const auto& s = checked();
    if constexpr (std::is_void_v<T>) {
      if (!s.ready()) return false;
      result_of(s);
      return true;
    } else {
      static_assert(std::is_copy_constructible_v<T>,
                    "strand::Handle<T>::try_get copies the value; for a move-only T use "
                    "ready() and get()");
      if (!s.ready()) return std::optional<T>();
      return std::optional<T>(result_of(s));
    }
  }

  // The task's exception once it failed (or a strand::Cancelled once cancelled); null otherwise.
  [[nodiscard]] std::exception_ptr exception() const { return checked().exception(); }

  // Returns true if the task will not complete normally: a queued task never starts; a running
  // task's std::stop_token is requested and the handle reads cancelled at once (whatever the
  // function still returns is dropped). False if the task already completed or failed: its result
  // is left as it was. Idempotent.
  bool cancel() const { return mutable_state().cancel(); }

  // Runs `f` on the completing thread (at once if already finished). `f` may take the handle
  // (`void(const Handle<T>&)`) or nothing. An exception thrown by `f` goes to strand's error
  // reporter; it changes nothing else.
  template <class F>
  const Handle& on_complete(F&& f) const {
    static_assert(std::is_invocable_v<std::decay_t<F>&, const Handle&> ||
                      std::is_invocable_v<std::decay_t<F>&>,
                  "strand::Handle::on_complete: the callback must be callable with "
                  "(const strand::Handle<T>&) or with no arguments");
    mutable_state().add_continuation(std::make_unique<detail::FunctionContinuation<Callback<F>>>(
        Callback<F>{std::forward<F>(f)}));
    return *this;
  }

  // A handle for `f(value)` (or `f()` for Handle<void>), run on the completing thread once this
  // task completed. If this task failed or was cancelled, `f` is not called and the new handle
  // fails the same way.
  template <class F>
  auto then(F&& f) const {
    return then_on([](auto&& run) { run(); }, std::forward<F>(f));
  }

  // As then(f), but `f` runs on `executor` (anything with `post(callable)`, e.g. a ThreadPool),
  // which must outlive this task. If the executor refuses or drops the work, the continuation's
  // handle fails with the executor's exception or reads cancelled.
  template <class Executor, class F>
  requires requires(Executor& e) {
    e.post([] {});
  }
  auto then(Executor& executor, F&& f) const {
    return then_on([&executor](auto&& run) { executor.post(std::forward<decltype(run)>(run)); },
                   std::forward<F>(f));
  }

  friend bool operator==(const Handle& a, const Handle& b) noexcept {
    return a.state_.get() == b.state_.get();
  }

  // For strand's own layers.
  [[nodiscard]] state_type* state() const noexcept { return state_.get(); }

 private:
  template <class F>
  struct Callback {
    std::decay_t<F> f;
    void operator()(detail::StateBase& finished) noexcept {
      try {
        if constexpr (std::is_invocable_v<std::decay_t<F>&, const Handle&>) {
          f(Handle(detail::StateRef<state_type>::share(static_cast<state_type*>(&finished))));
        } else {
          f();
        }
      } catch (...) {
        report_error("strand: a completion callback threw", std::current_exception());
      }
    }
  };

  template <class Schedule, class F>
  auto then_on(Schedule schedule, F&& f) const {
    if constexpr (std::is_void_v<T>) {
      static_assert(std::is_invocable_v<std::decay_t<F>&>,
                    "strand::Handle<void>::then: the continuation must take no arguments");
    } else {
      static_assert(std::is_invocable_v<std::decay_t<F>&, const T&>,
                    "strand::Handle<T>::then: the continuation must be callable with the "
                    "task's value (const T&)");
    }
    using U = typename detail::then_result<std::decay_t<F>, T>::type;
    // The continuation's own state; one reference for the returned handle, one for the callback.
    auto next = detail::StateRef<detail::State<U>>::adopt(
        detail::make_state<detail::PlainState<U>>(Status::pending));
    auto on_done = [schedule = std::move(schedule), next,
                    f = std::decay_t<F>(std::forward<F>(f))](detail::StateBase& finished) mutable {
      auto antecedent =
          Handle(detail::StateRef<state_type>::share(static_cast<state_type*>(&finished)));
      if (antecedent.status() != Status::completed) {
        antecedent.status() == Status::cancelled
            ? next->set_cancelled()
            : (void)next->set_exception(antecedent.exception());
        return;
      }
      // If the executor drops the closure unrun (a cancelling shutdown), the guard cancels the
      // continuation, so its handle still finishes.
      auto run = [antecedent, guard = detail::CancelUnlessRun<U>{next},
                  f = std::move(f)]() mutable noexcept {
        auto& target = *guard.run();
        if (!target.try_start()) return;  // the continuation itself was cancelled
        if constexpr (std::is_void_v<T>) {
          detail::complete_with(target, f);
        } else {
          detail::complete_with(target, [&] { return f(antecedent.state()->value()); });
        }
      };
      try {
        schedule(std::move(run));
      } catch (...) {  // e.g. the executor was shut down: the continuation fails with that reason
        next->set_exception(std::current_exception());
      }
    };
    mutable_state().add_continuation(
        std::make_unique<detail::FunctionContinuation<decltype(on_done)>>(std::move(on_done)));
    return Handle<U>(std::move(next));
  }

  decltype(auto) result_of(const state_type& s) const {
    if (s.status() != Status::completed) s.rethrow();
    if constexpr (!std::is_void_v<T>) return s.value();
  }

  const state_type& checked() const {
    if (!state_) throw InvalidHandle();
    return *state_;
  }
  state_type& mutable_state() const {
    if (!state_) throw InvalidHandle();
    return *state_;
  }
  template <class Rep, class Period>
  static std::chrono::nanoseconds ceil_ns(std::chrono::duration<Rep, Period> d) {
    return std::chrono::ceil<std::chrono::nanoseconds>(d);
  }

  detail::StateRef<state_type> state_;
};

}  // namespace strand
