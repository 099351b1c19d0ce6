// strand/coro.hpp — Coro<T>: a C++20 coroutine task.
//
//   strand::Coro<int> answer() { co_return 42; }
//   strand::Coro<int> twice() { co_return 2 * co_await answer(); }
//
// Lazy: calling a coroutine function makes its frame and runs nothing. It runs when awaited (the
// awaiting coroutine resumes when it finishes, without a trip through any queue) or when given to
// an EventLoop (`loop.run(twice())`, `loop.spawn(...)`, strand::spawn_on(pool, ...)). An exception
// it throws reaches whoever awaits it. A Coro owns its frame: destroying an unfinished Coro
// destroys the frame (and, through its locals, the frames it awaits).
#pragma once

#include <coroutine>
#include <exception>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <variant>

namespace strand {

template <class T = void>
class Coro;

namespace detail {

// What a coroutine's promise does at the end: resume whoever awaits it (symmetric transfer, so a
// chain of awaits does not grow the stack).
struct ResumeContinuation {
  bool await_ready() const noexcept { return false; }
  template <class Promise>
  std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> self) noexcept {
    auto next = self.promise().continuation;
    return next ? next : std::noop_coroutine();
  }
  void await_resume() const noexcept {}
};

template <class T>
class CoroPromiseBase {
 public:
  std::coroutine_handle<> continuation;

  std::suspend_always initial_suspend() const noexcept { return {}; }
  ResumeContinuation final_suspend() const noexcept { return {}; }
  void unhandled_exception() noexcept { result_.template emplace<2>(std::current_exception()); }

  T take() {
    if (result_.index() == 2) std::rethrow_exception(std::get<2>(result_));
    if constexpr (!std::is_void_v<T>) return std::move(std::get<1>(result_));
  }

 protected:
  using Stored = std::conditional_t<std::is_void_v<T>, std::monostate, T>;
  std::variant<std::monostate, Stored, std::exception_ptr> result_;
};

template <class T>
class CoroPromise : public CoroPromiseBase<T> {
 public:
  Coro<T> get_return_object() noexcept;
  template <class U = T>
  requires std::is_convertible_v<U&&, T>
  void return_value(U&& value) { this->result_.template emplace<1>(std::forward<U>(value)); }
};

template <>
class CoroPromise<void> : public CoroPromiseBase<void> {
 public:
  Coro<void> get_return_object() noexcept;
  void return_void() noexcept { result_.emplace<1>(); }
};

}  // namespace detail

template <class T>
class [[nodiscard]] Coro {
  static_assert(!std::is_reference_v<T>,
                "strand::Coro<T>: T must not be a reference; return a pointer or a "
                "std::reference_wrapper instead");

 public:
  using promise_type = detail::CoroPromise<T>;
  using value_type = T;

  Coro() noexcept = default;
  explicit Coro(std::coroutine_handle<promise_type> frame) noexcept : frame_(frame) {}
  Coro(Coro&& other) noexcept : frame_(std::exchange(other.frame_, {})) {}
  Coro& operator=(Coro&& other) noexcept {
    if (this != &other) {
      if (frame_) frame_.destroy();
      frame_ = std::exchange(other.frame_, {});
    }
    return *this;
  }
  Coro(const Coro&) = delete;
  Coro& operator=(const Coro&) = delete;
  ~Coro() {
    if (frame_) frame_.destroy();
  }

  [[nodiscard]] bool valid() const noexcept { return static_cast<bool>(frame_); }
  [[nodiscard]] bool done() const noexcept { return frame_ && frame_.done(); }

  // `co_await coro`: starts it, suspends the caller until it finishes, then gives its value or
  // rethrows its exception.
  auto operator co_await() && noexcept { return Awaiter{frame_}; }
  auto operator co_await() & noexcept { return Awaiter{frame_}; }

  // For strand's own layers.
  [[nodiscard]] std::coroutine_handle<promise_type> frame() const noexcept { return frame_; }

 private:
  struct Awaiter {
    std::coroutine_handle<promise_type> frame;
    bool await_ready() const noexcept { return !frame || frame.done(); }
    std::coroutine_handle<> await_suspend(std::coroutine_handle<> caller) noexcept {
      frame.promise().continuation = caller;
      return frame;
    }
    T await_resume() {
      if (!frame) throw std::logic_error("strand: co_await on an empty Coro");
      return frame.promise().take();
    }
  };

  std::coroutine_handle<promise_type> frame_;
};

namespace detail {
template <class T>
Coro<T> CoroPromise<T>::get_return_object() noexcept {
  return Coro<T>(std::coroutine_handle<CoroPromise<T>>::from_promise(*this));
}
inline Coro<void> CoroPromise<void>::get_return_object() noexcept {
  return Coro<void>(std::coroutine_handle<CoroPromise<void>>::from_promise(*this));
}

template <class T>
struct is_coro : std::false_type {};
template <class T>
struct is_coro<Coro<T>> : std::true_type {};
}  // namespace detail

template <class T>
inline constexpr bool is_coro_v = detail::is_coro<std::remove_cvref_t<T>>::value;

}  // namespace strand
