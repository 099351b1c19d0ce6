// strand/callbacks.hpp — the options a runner takes after its function, by type:
//
//   strand::on_iter(f)   called with each element, as produced, when the function returns a range
//                        or a strand::Generator; the handle is then a Handle<void>
//   strand::on_end(f)    called with the function's result (or with nothing for void / on_iter)
//   strand::on_error(f)  called with the exception (as std::exception_ptr or const std::exception&)
//   strand::use_pool(p)  run pool tasks on `p` instead of strand::default_pool()
//   strand::ProcessOptions{...}  grace period, timeout, memory limit of process tasks
//   strand::yield_on_iter(false)  coroutine target: do not yield to the loop between on_iter calls
//
// Callbacks run on the thread that ran the function, before the handle completes, so a waiter that
// wakes sees their effects. An exception thrown by on_iter or on_end fails the task like one thrown
// by the function. on_error observes a failure; the handle still reads failed and get() rethrows.
#pragma once

#include <chrono>
#include <cstddef>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

#include "strand/errors.hpp"

namespace strand {

class ThreadPool;

template <class F>
struct OnIter {
  F f;
};
template <class F>
struct OnEnd {
  F f;
};
template <class F>
struct OnError {
  F f;
};
struct UsePool {
  ThreadPool* pool;
};
struct YieldOnIter {
  bool yield;
};

template <class F>
[[nodiscard]] OnIter<std::decay_t<F>> on_iter(F&& f) {
  return {std::forward<F>(f)};
}
template <class F>
[[nodiscard]] OnEnd<std::decay_t<F>> on_end(F&& f) {
  return {std::forward<F>(f)};
}
template <class F>
[[nodiscard]] OnError<std::decay_t<F>> on_error(F&& f) {
  return {std::forward<F>(f)};
}
[[nodiscard]] inline UsePool use_pool(ThreadPool& pool) noexcept {
  return {&pool};
}
[[nodiscard]] inline YieldOnIter yield_on_iter(bool yield) noexcept {
  return {yield};
}

// No callback of that kind was given.
// How a process task (strand::process) runs its child.
struct ProcessOptions {
  // After cancel() or a timeout the child gets SIGTERM, then SIGKILL once this much time passed.
  std::chrono::milliseconds grace{1000};
  // When set, a child still running after this long is stopped as by cancel(), and the handle fails
  // with strand::Timeout.
  std::optional<std::chrono::milliseconds> timeout{};
  // When set, the child's address space is limited to this many bytes (RLIMIT_AS); a child that
  // runs out fails its handle with strand::ProcessCrashed. (Not under AddressSanitizer, which
  // reserves terabytes of address space up front.)
  std::optional<std::size_t> memory_limit{};
};

struct NoCallback {};

namespace detail {

template <class T>
struct is_option : std::false_type {};
template <class F>
struct is_option<OnIter<F>> : std::true_type {};
template <class F>
struct is_option<OnEnd<F>> : std::true_type {};
template <class F>
struct is_option<OnError<F>> : std::true_type {};
template <>
struct is_option<UsePool> : std::true_type {};
template <>
struct is_option<ProcessOptions> : std::true_type {};
template <>
struct is_option<YieldOnIter> : std::true_type {};
template <class T>
inline constexpr bool is_option_v = is_option<std::remove_cvref_t<T>>::value;

template <class Cb, class... A>
void invoke_callback(const Cb& cb, A&&... a) {
  if constexpr (std::is_invocable_v<const decltype(cb.f)&, A...>) {
    cb.f(std::forward<A>(a)...);
  } else {
    static_assert(std::is_invocable_v<const decltype(cb.f)&>,
                  "strand: on_end must be callable with the function's result (const R&) or with "
                  "nothing");
    cb.f();
  }
}

template <class Cb>
void invoke_error_callback(const Cb& cb, const std::exception_ptr& error) noexcept {
  try {
    if constexpr (std::is_invocable_v<const decltype(cb.f)&, std::exception_ptr>) {
      cb.f(error);
    } else {
      static_assert(std::is_invocable_v<const decltype(cb.f)&, const std::exception&>,
                    "strand: on_error must be callable with std::exception_ptr or with "
                    "const std::exception&");
      try {
        std::rethrow_exception(error);
      } catch (const std::exception& e) {
        cb.f(e);
      } catch (...) {  // not a std::exception: nothing to pass; the handle still has it
      }
    }
  } catch (...) {
    report_error("strand: an on_error callback threw", std::current_exception());
  }
}

}  // namespace detail
}  // namespace strand
