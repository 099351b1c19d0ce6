// The shared state behind a Handle<T>: status, result, waiters and continuations, in one
// allocation.
//
// Lifecycle: a producer (a pool job, a thread, a Promise) claims the right to finish, writes the
// value or exception, then tries to publish a terminal status with one compare-and-swap. `cancel()`
// races for the same CAS; whoever wins decides the outcome, and the loser cleans up after itself.
// Waiters sleep on the status word (a futex); pool workers that wait help run other work instead.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <new>
#include <optional>
#include <stop_token>
#include <type_traits>
#include <utility>

#include "strand/detail/help.hpp"
#include "strand/errors.hpp"
#include "strand/status.hpp"

namespace strand::detail {

// Run once the state is terminal, on the thread that made it terminal (or at once, on the thread
// adding it, when it already is).
class StateBase;

// A continuation receives the finished state rather than holding a reference to it, so a state
// and its continuations never keep each other alive.
class Continuation {
 public:
  virtual ~Continuation() = default;
  virtual void run(StateBase& finished) noexcept = 0;
  Continuation* next = nullptr;
};

template <class F>
class FunctionContinuation final : public Continuation {
 public:
  explicit FunctionContinuation(F f) : f_(std::move(f)) {}
  void run(StateBase& finished) noexcept override { f_(finished); }

 private:
  F f_;
};

class StateBase : public HelpWaitable {
 public:
  StateBase(const StateBase&) = delete;
  StateBase& operator=(const StateBase&) = delete;

  void add_ref() const noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() const noexcept {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) const_cast<StateBase*>(this)->destroy();
  }

  [[nodiscard]] Status status() const noexcept {
    return static_cast<Status>(word_.load(std::memory_order_acquire) & kStatusMask);
  }
  [[nodiscard]] bool ready() const noexcept { return is_terminal(status()); }

  void wait() const noexcept;
  // False if the deadline passed first.
  bool wait_until(std::chrono::steady_clock::time_point deadline) const noexcept;

  // See Handle::cancel.
  bool cancel() noexcept;

  // queued/pending -> running. False if the task was cancelled before it could start.
  bool try_start() noexcept;

  // The producer's exclusive right to finish. False if another producer already claimed it.
  bool claim() noexcept {
    return (word_.fetch_or(kClaimed, std::memory_order_acq_rel) & kClaimed) == 0;
  }

  // Publish failure. Only after claim(). Returns false if the task had been cancelled meanwhile.
  bool set_exception(std::exception_ptr error) noexcept {
    error_ = std::move(error);
    if (publish(Status::failed)) return true;
    error_ = nullptr;
    return false;
  }

  void set_cancelled() noexcept { (void)cancel(); }

  // Runs `c` once the state is terminal (at once if it already is). Takes ownership.
  void add_continuation(std::unique_ptr<Continuation> c) noexcept;

  [[nodiscard]] std::stop_token stop_token() const noexcept { return stop_.get_token(); }
  // Gives the state a stop source that cancel() will request. Call before sharing the state.
  void enable_stop() { stop_ = std::stop_source(); }
  [[nodiscard]] bool cancel_requested() const noexcept { return stop_.stop_requested(); }

  // Rethrows the stored failure, or throws Cancelled. Only for failed/cancelled states.
  [[noreturn]] void rethrow() const;

  [[nodiscard]] std::exception_ptr exception() const noexcept;

  // HelpWaitable
  [[nodiscard]] bool is_done() const noexcept override { return ready(); }
  bool arm_helper_wake() const noexcept override;

 protected:
  explicit StateBase(Status initial, std::uint32_t refs = 1) noexcept
      : word_(static_cast<std::uint32_t>(initial)), refs_(refs) {}
  ~StateBase();

  // CAS to a terminal status; on success wakes waiters and runs continuations.
  bool publish(Status terminal) noexcept;

 private:
  static constexpr std::uint32_t kStatusMask = 0xffU;
  static constexpr std::uint32_t kClaimed = 1U << 8;   // a producer owns the right to finish
  static constexpr std::uint32_t kWaiters = 1U << 9;   // a thread sleeps on word_
  static constexpr std::uint32_t kHelpers = 1U << 10;  // a pool worker waits in help_until

  virtual void destroy() noexcept = 0;
  void finish(std::uint32_t old_word) noexcept;

  mutable std::atomic<std::uint32_t> word_;
  mutable std::atomic<std::uint32_t> refs_;
  std::atomic<Continuation*> continuations_{nullptr};
  std::stop_source stop_{std::nostopstate};
  std::exception_ptr error_;
};

template <class T>
class State : public StateBase {
 public:
  // Publish a value. Only after claim(). False if the task had been cancelled meanwhile (the value
  // is then dropped).
  template <class... A>
  bool set_value(A&&... a) noexcept(std::is_nothrow_constructible_v<T, A...>) {
    ::new (static_cast<void*>(&storage_)) T(std::forward<A>(a)...);
    if (publish(Status::completed)) return true;
    value().~T();
    return false;
  }

  // Only when status() == completed.
  [[nodiscard]] const T& value() const noexcept {
    return *std::launder(reinterpret_cast<const T*>(&storage_));
  }
  [[nodiscard]] T& value() noexcept { return *std::launder(reinterpret_cast<T*>(&storage_)); }

 protected:
  using StateBase::StateBase;
  ~State() {
    if (status() == Status::completed) value().~T();
  }

 private:
  alignas(T) unsigned char storage_[sizeof(T)];
};

template <>
class State<void> : public StateBase {
 public:
  bool set_value() noexcept { return publish(Status::completed); }

 protected:
  using StateBase::StateBase;
};

// A state that is nothing more: used by Promise and by continuations.
template <class T>
class PlainState final : public State<T> {
 public:
  explicit PlainState(Status initial, std::uint32_t refs = 1) noexcept : State<T>(initial, refs) {}

 private:
  void destroy() noexcept override { delete this; }
};

// Allocates a state (or a job that is one). States own themselves through their intrusive count and
// free themselves in destroy(), so the unique_ptr only guards construction.
template <class S, class... A>
S* make_state(A&&... a) {
  return std::make_unique<S>(std::forward<A>(a)...).release();
}

// Intrusive owning pointer to a state.
template <class S>
class StateRef {
 public:
  StateRef() = default;
  // Adopts a reference the caller already holds.
  static StateRef adopt(S* s) noexcept {
    StateRef r;
    r.p_ = s;
    return r;
  }
  static StateRef share(S* s) noexcept {
    if (s != nullptr) s->add_ref();
    return adopt(s);
  }
  StateRef(const StateRef& o) noexcept : p_(o.p_) {
    if (p_ != nullptr) p_->add_ref();
  }
  StateRef(StateRef&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  StateRef& operator=(StateRef o) noexcept {
    std::swap(p_, o.p_);
    return *this;
  }
  ~StateRef() {
    if (p_ != nullptr) p_->release();
  }
  S* get() const noexcept { return p_; }
  S* operator->() const noexcept { return p_; }
  S& operator*() const noexcept { return *p_; }
  explicit operator bool() const noexcept { return p_ != nullptr; }
  S* release() noexcept { return std::exchange(p_, nullptr); }

 private:
  S* p_ = nullptr;
};

}  // namespace strand::detail
