// strand/select.hpp — waiting on many channels at once.
//
// Readiness, as in spool (nothing is taken; the caller then get()s from the ready one):
//   std::size_t i = strand::select(numbers, words);       // 0 or 1: which has a value (or closed)
//   for (std::size_t i : strand::select_each(a, b)) { ... }   // ready sources until all closed
//
// Go's select statement, with receive and send cases, a default and a timeout:
//   strand::Select sel;
//   sel.recv(numbers, [](std::optional<int> v) { ... });  // empty v: the channel is closed
//   sel.send(words, std::string("hi"), [] { ... });
//   sel.on_timeout(100ms, [] { ... });                     // or sel.on_default(...): never block
//   std::size_t fired = sel.wait();                        // runs that case's handler
//
// Channels of different element types mix freely; strand::Endpoint (go.hpp) counts as its inbound
// channel. When several cases are ready, the one taken is chosen uniformly at random, as in Go, so
// no channel starves. These block the calling thread; a coroutine awaits one channel at a time.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

#include "strand/channel.hpp"
#include "strand/generator.hpp"

namespace strand {
namespace detail {

[[noreturn]] void throw_empty_select(const char* what);
// A uniformly random permutation of 0..n-1 (a thread-local generator; Fisher-Yates).
void random_order(std::span<std::size_t> order) noexcept;

// The channel a source stands for: itself, or an endpoint's inbound channel.
template <class S>
auto& source_channel(S& source) noexcept {
  if constexpr (requires { source.inbound(); }) {
    return source.inbound();
  } else {
    return source;
  }
}

// One channel watched for readiness, its element type erased.
struct ReadySource {
  std::shared_ptr<void> keep;  // the channel's core, alive while we wait on it
  SpinLock* lock;
  bool (*has_value)(void* core) noexcept;   // under lock
  bool (*closed)(void* core) noexcept;      // under lock
  void (*enter_slow)(void* core) noexcept;  // under lock, before watching
  void (*settle)(void* core) noexcept;      // under lock, after watching
  WaitQueue* watchers;
};

template <class T>
ReadySource make_ready_source(Channel<T>& ch) {
  auto* core = ch.core().get();
  return ReadySource{ch.core(),
                     &core->lock,
                     [](void* c) noexcept {
                       auto* k = static_cast<ChannelCore<T>*>(c);
                       return k->count() != 0 || k->senders.any_waiting();
                     },
                     [](void* c) noexcept { return static_cast<ChannelCore<T>*>(c)->closed; },
                     [](void* c) noexcept { static_cast<ChannelCore<T>*>(c)->enter_slow_locked(); },
                     [](void* c) noexcept { static_cast<ChannelCore<T>*>(c)->settle_locked(); },
                     &core->watchers};
}

inline constexpr std::size_t kNone = std::numeric_limits<std::size_t>::max();

// The index of a ready source, chosen at random among the ready ones. A closed channel counts as
// ready when `closed_is_ready`; otherwise closed and drained sources are skipped, and kNone means
// all of them are.
std::size_t wait_ready(std::span<ReadySource> sources, bool closed_is_ready);

}  // namespace detail

// Blocks until one of the channels has a value (or is closed) and returns its index; takes
// nothing. Throws std::invalid_argument when given no channels.
template <class... Sources>
std::size_t select(Sources&... sources) {
  if constexpr (sizeof...(Sources) == 0) {
    detail::throw_empty_select("select");
  } else {
    detail::ReadySource ready[] = {detail::make_ready_source(detail::source_channel(sources))...};
    return detail::wait_ready(ready, /*closed_is_ready=*/true);
  }
}

// As select, over channels of one type held in a container of pointers.
template <class T>
std::size_t select(std::span<Channel<T>* const> channels) {
  if (channels.empty()) detail::throw_empty_select("select");
  std::vector<detail::ReadySource> ready;
  ready.reserve(channels.size());
  for (Channel<T>* ch : channels) ready.push_back(detail::make_ready_source(*ch));
  return detail::wait_ready(ready, true);
}

// Spool's `for source in select(a, b)`: yields the index of a channel with a value each time one
// has one, until every channel is closed and drained. The loop body should get() from it.
template <class... Sources>
Generator<std::size_t> select_each(Sources&... sources) {
  if constexpr (sizeof...(Sources) == 0) detail::throw_empty_select("select_each");
  std::vector<detail::ReadySource> ready = {
      detail::make_ready_source(detail::source_channel(sources))...};
  for (;;) {
    const std::size_t i = detail::wait_ready(ready, /*closed_is_ready=*/false);
    if (i == detail::kNone) co_return;
    co_yield i;
  }
}

// Go's select statement. Cases are numbered in the order they are added, default and timeout
// included; wait() returns the number of the case that ran. A Select can be waited on many times.
class Select {
 public:
  Select() = default;
  Select(const Select&) = delete;
  Select& operator=(const Select&) = delete;
  Select(Select&&) noexcept = default;
  Select& operator=(Select&&) noexcept = default;

  // Receives from `source`; `handler` gets the value (an empty optional: closed and drained).
  template <class S, class Handler = void (*)(
                         std::optional<typename std::remove_cvref_t<
                             decltype(detail::source_channel(std::declval<S&>()))>::value_type>)>
  std::size_t recv(S& source, Handler handler = nullptr) {
    auto& ch = detail::source_channel(source);
    using T = typename std::remove_cvref_t<decltype(ch)>::value_type;
    static_assert(
        std::is_invocable_v<Handler&, std::optional<T>> || std::is_null_pointer_v<Handler>,
        "strand::Select::recv: the handler must be callable with std::optional<T>");
    cases_.push_back(std::make_unique<RecvCase<T, Handler>>(ch, std::move(handler)));
    return cases_.size() - 1;
  }
  // Sends a copy of `value` on `source` (each wait() a fresh copy); `handler` runs once it was
  // taken. A closed channel makes wait() throw ChannelClosed, as a put would.
  template <class S, class V, class Handler = void (*)()>
  std::size_t send(S& source, V&& value, Handler handler = nullptr) {
    auto& ch = detail::source_channel(source);
    using T = typename std::remove_cvref_t<decltype(ch)>::value_type;
    cases_.push_back(
        std::make_unique<SendCase<T, Handler>>(ch, T(std::forward<V>(value)), std::move(handler)));
    return cases_.size() - 1;
  }
  // Runs `handler` at once when no case is ready: wait() never blocks.
  std::size_t on_default(std::function<void()> handler = [] {}) {
    check_no_fallback("on_default");
    default_ = std::move(handler);
    fallback_index_ = cases_.size();
    cases_.push_back(nullptr);
    return fallback_index_;
  }
  // Runs `handler` when no case was ready within `timeout`.
  template <class Rep, class Period>
  std::size_t on_timeout(
      std::chrono::duration<Rep, Period> timeout, std::function<void()> handler = [] {}) {
    check_no_fallback("on_timeout");
    timeout_ = std::chrono::ceil<std::chrono::nanoseconds>(timeout);
    default_ = std::move(handler);
    fallback_index_ = cases_.size();
    cases_.push_back(nullptr);
    return fallback_index_;
  }

  // Blocks until a case can proceed, performs it, runs its handler and returns its number. Throws
  // std::invalid_argument if there is no channel case and no default (it would block forever).
  std::size_t wait();

 private:
  using SpinLockRef = detail::SpinLock*;
  struct Case {
    virtual ~Case() = default;
    // Called at the start of each wait(): a send case takes a fresh copy of its value.
    virtual void prepare() {}
    // Non-blocking attempt; true if done (the handler then still has to run).
    virtual bool try_now() = 0;
    // Under the channel's lock: whether try_now could succeed (switching the channel to slow mode,
    // as a waiter is about to queue); queue `entry` otherwise.
    virtual SpinLockRef lock_ref() noexcept = 0;
    virtual bool ready_locked() noexcept = 0;
    virtual void enqueue_locked(detail::WaitEntry& entry) noexcept = 0;
    virtual void dequeue_locked(detail::WaitEntry& entry) noexcept = 0;
    virtual void settle_locked() noexcept = 0;  // no longer about to wait
    virtual bool destroyed_locked() noexcept = 0;
    virtual void* slot() noexcept = 0;
    virtual void run_handler() = 0;
  };

  template <class T, class Handler>
  struct RecvCase final : Case {
    RecvCase(Channel<T>& ch, Handler h) : core(ch.core()), handler(std::move(h)) {}
    bool try_now() override {
      detail::Waiter* wake = nullptr;
      detail::ChanOp r;
      {
        std::lock_guard lock(core->lock);
        r = core->recv_locked(value, wake);
      }
      if (wake) wake->notify();
      return r != detail::ChanOp::would_block;
    }
    SpinLockRef lock_ref() noexcept override { return &core->lock; }
    bool ready_locked() noexcept override {
      core->enter_slow_locked();  // a waiter is about to queue: the ring must hold still
      return core->recv_ready_locked();
    }
    void enqueue_locked(detail::WaitEntry& e) noexcept override { core->receivers.push(&e); }
    void dequeue_locked(detail::WaitEntry& e) noexcept override {
      core->receivers.remove(&e);
      core->settle_locked();
    }
    void settle_locked() noexcept override { core->settle_locked(); }
    bool destroyed_locked() noexcept override { return core->destroyed; }
    void* slot() noexcept override { return &value; }
    void run_handler() override {
      std::optional<T> v = std::exchange(value, std::nullopt);
      if constexpr (!std::is_null_pointer_v<Handler>) {
        if constexpr (std::is_pointer_v<Handler>) {
          if (handler == nullptr) return;
        }
        handler(std::move(v));
      }
    }
    std::shared_ptr<detail::ChannelCore<T>> core;
    Handler handler;
    std::optional<T> value;
  };

  template <class T, class Handler>
  struct SendCase final : Case {
    static_assert(std::is_copy_constructible_v<T>,
                  "strand::Select::send: each wait() sends a copy of the value, so T must be "
                  "copy-constructible");
    SendCase(Channel<T>& ch, T v, Handler h)
        : core(ch.core()), handler(std::move(h)), value(std::move(v)) {}
    void prepare() override {
      if (!pending) pending.emplace(value);
    }
    bool try_now() override {
      detail::Waiter* wake = nullptr;
      detail::ChanOp r;
      {
        std::lock_guard lock(core->lock);
        r = core->send_locked(*pending, wake);
      }
      if (wake) wake->notify();
      if (r == detail::ChanOp::closed) throw ChannelClosed();
      return r == detail::ChanOp::done;
    }
    SpinLockRef lock_ref() noexcept override { return &core->lock; }
    bool ready_locked() noexcept override {
      core->enter_slow_locked();
      return core->send_ready_locked();
    }
    void enqueue_locked(detail::WaitEntry& e) noexcept override {
      core->senders.push(&e);
      core->wake_watchers();
    }
    void dequeue_locked(detail::WaitEntry& e) noexcept override {
      core->senders.remove(&e);
      core->settle_locked();
    }
    void settle_locked() noexcept override { core->settle_locked(); }
    bool destroyed_locked() noexcept override { return core->destroyed; }
    void* slot() noexcept override { return &*pending; }
    void run_handler() override {
      pending.reset();  // sent (moved from)
      if constexpr (!std::is_null_pointer_v<Handler>) {
        if constexpr (std::is_pointer_v<Handler>) {
          if (handler == nullptr) return;
        }
        handler();
      }
    }
    std::shared_ptr<detail::ChannelCore<T>> core;
    Handler handler;
    T value;
    std::optional<T> pending;  // the copy this wait() offers
  };

  void check_no_fallback(const char* what) const;

  std::vector<std::unique_ptr<Case>> cases_;
  std::function<void()> default_;
  std::optional<std::chrono::nanoseconds> timeout_;
  std::size_t fallback_index_ = detail::kNone;
  std::vector<std::size_t> order_;          // wait()'s scratch: the channel cases, shuffled
  std::vector<detail::WaitEntry> entries_;  // wait()'s scratch: a queue entry per case
};

}  // namespace strand
