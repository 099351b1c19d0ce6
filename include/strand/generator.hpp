// strand/generator.hpp — Generator<T>: a lazy sequence written as a coroutine.
//
//   strand::Generator<int> count_to(int n) {
//     for (int i = 1; i <= n; ++i) co_yield i;
//   }
//   for (int i : count_to(3)) std::cout << i;   // 123
//
// C++20 has no std::generator; this is the small input range strand's runners stream through
// `on_iter`: each element reaches the callback as soon as the function yields it. An exception
// thrown in the body propagates out of the iteration.
#pragma once

#include <coroutine>
#include <exception>
#include <iterator>
#include <memory>
#include <type_traits>
#include <utility>

namespace strand {

template <class T>
class Generator {
  static_assert(!std::is_reference_v<T>, "strand::Generator<T>: T must be a value type");

 public:
  struct promise_type {
    const T* current = nullptr;
    std::exception_ptr error;

    Generator get_return_object() noexcept {
      return Generator(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    // The yielded object lives in the coroutine frame until it resumes, so pointing at it is safe.
    std::suspend_always yield_value(const T& value) noexcept {
      current = std::addressof(value);
      return {};
    }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { error = std::current_exception(); }
    template <class U>
    std::suspend_never await_transform(U&&) = delete;  // a generator cannot co_await
  };

  class iterator {
   public:
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    using reference = const T&;

    iterator() noexcept = default;
    reference operator*() const noexcept { return *coro_.promise().current; }
    const T* operator->() const noexcept { return coro_.promise().current; }
    iterator& operator++() {
      coro_.resume();
      check();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) noexcept {
      return !it.coro_ || it.coro_.done();
    }

   private:
    friend class Generator;
    explicit iterator(std::coroutine_handle<promise_type> coro) : coro_(coro) { check(); }
    void check() {
      if (coro_.done() && coro_.promise().error) std::rethrow_exception(coro_.promise().error);
    }
    std::coroutine_handle<promise_type> coro_;
  };

  Generator(Generator&& other) noexcept : coro_(std::exchange(other.coro_, {})) {}
  Generator& operator=(Generator&& other) noexcept {
    std::swap(coro_, other.coro_);
    return *this;
  }
  ~Generator() {
    if (coro_) coro_.destroy();
  }

  // Starts (or, if begun already, continues) the sequence. Single pass.
  iterator begin() {
    if (coro_ && !coro_.done()) coro_.resume();
    return iterator(coro_);
  }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  explicit Generator(std::coroutine_handle<promise_type> coro) noexcept : coro_(coro) {}
  std::coroutine_handle<promise_type> coro_;
};

}  // namespace strand
