// strand/promise.hpp — Promise<T>: the producing side of a Handle<T>.
//
// strand's runners use it internally; use it yourself to hand out a Handle for work that strand
// does not run (a callback API, an event you wait for):
//
//   strand::Promise<int> p;
//   strand::Handle<int> h = p.handle();
//   std::thread([p = std::move(p)]() mutable { p.set_value(42); }).detach();
//
// A promise destroyed before it is satisfied fails its handle with strand::BrokenPromise, and a
// value whose construction throws fails it with that exception, so a waiter is not left hanging.
#pragma once

#include <exception>
#include <stdexcept>
#include <stop_token>
#include <utility>

#include "strand/detail/state.hpp"
#include "strand/errors.hpp"
#include "strand/handle.hpp"

namespace strand {

template <class T = void>
class Promise {
 public:
  // A promise whose handle starts as `initial`: pending, queued or running (std::invalid_argument
  // otherwise: a finished handle needs its value or exception, given by set_value/set_exception).
  explicit Promise(Status initial = Status::pending)
      : state_(detail::StateRef<detail::State<T>>::adopt(
            detail::make_state<detail::PlainState<T>>(checked_initial(initial)))) {
    state_->enable_stop();
  }
  Promise(Promise&&) noexcept = default;
  Promise& operator=(Promise&& other) noexcept {
    if (this != &other) {
      abandon();
      state_ = std::move(other.state_);
    }
    return *this;
  }
  Promise(const Promise&) = delete;
  Promise& operator=(const Promise&) = delete;
  ~Promise() { abandon(); }

  // Another handle on the promised result; call it as often as you like.
  [[nodiscard]] Handle<T> handle() const { return Handle<T>(checked()); }

  // pending/queued -> running. False if the handle was cancelled first: do not start then.
  bool set_running() { return checked()->try_start(); }

  // Publishes the value. Throws strand::AlreadySatisfied the second time. Returns false if the
  // handle had been cancelled (the value is dropped).
  template <class... A>
  bool set_value(A&&... a) {
    claim();
    if constexpr (std::is_void_v<T>) {
      static_assert(sizeof...(A) == 0, "strand::Promise<void>::set_value takes no arguments");
      return state_->set_value();
    } else {
      try {
        return state_->set_value(std::forward<A>(a)...);
      } catch (...) {  // making the value threw: the handle fails with that, and so does the caller
        state_->set_exception(std::current_exception());
        throw;
      }
    }
  }
  // Throws std::invalid_argument for a null exception_ptr (there would be nothing to rethrow).
  bool set_exception(std::exception_ptr error) {
    if (!error) throw std::invalid_argument("strand::Promise::set_exception: null exception_ptr");
    claim();
    return state_->set_exception(std::move(error));
  }

  // Requested when the handle is cancelled: attach a std::stop_callback to stop the real work.
  [[nodiscard]] std::stop_token stop_token() const { return checked()->stop_token(); }
  [[nodiscard]] bool cancelled() const { return checked()->status() == Status::cancelled; }

 private:
  static Status checked_initial(Status initial) {
    if (is_terminal(initial)) {
      throw std::invalid_argument(
          "strand::Promise: a promise starts pending, queued or running, not finished");
    }
    return initial;
  }
  const detail::StateRef<detail::State<T>>& checked() const {
    if (!state_) throw InvalidHandle();
    return state_;
  }
  void claim() {
    if (!checked()->claim()) throw AlreadySatisfied();
  }
  void abandon() noexcept {
    if (state_ && state_->claim()) state_->set_exception(std::make_exception_ptr(BrokenPromise()));
    state_ = {};
  }

  detail::StateRef<detail::State<T>> state_;
};

}  // namespace strand
