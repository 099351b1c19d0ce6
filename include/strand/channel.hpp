// strand/channel.hpp — Channel<T>: Go's channels, for threads and coroutines alike.
//
//   strand::Channel<int> ch;          // unbuffered: put() waits for a get() (a rendezvous)
//   strand::Channel<int> jobs(64);    // buffered: put() waits only while 64 values are queued
//   ch.put(7);                        // from a thread; or `co_await ch.send(7)` in a coroutine
//   std::optional<int> v = ch.get();  // or `co_await ch.recv()`; empty once closed and drained
//   ch.close();                       // values already queued can still be read
//   for (int v : jobs) use(v);        // reads until the channel is closed and drained
//
// Any number of producers and consumers, threads and coroutines mixed: a blocked thread sleeps on a
// futex, a blocked coroutine is suspended and its thread (an EventLoop or a pool worker) runs other
// coroutines. No thread is ever started for a coroutine.
//
// Closing: put() on a closed channel throws strand::ChannelClosed; get() drains what is queued,
// then returns an empty optional. A Channel owns its channel: destroying it closes it, and whoever
// is still blocked on it (thread or coroutine) wakes with ChannelClosed ("destroyed while
// waiting").
#pragma once

#include <chrono>
#include <coroutine>
#include <cstddef>
#include <iterator>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>

#include "strand/detail/ring.hpp"
#include "strand/detail/waiter.hpp"
#include "strand/errors.hpp"

namespace strand {

// A put on a closed channel, or any wait on a channel destroyed while waiting.
class ChannelClosed : public Error {
 public:
  ChannelClosed();  // "strand: put on a closed channel"
  explicit ChannelClosed(const std::string& what) : Error(what) {}
  // "strand: the channel was destroyed while waiting on it"
  static ChannelClosed destroyed();
};

template <class T>
class Channel;

namespace detail {

[[noreturn]] void throw_no_scheduler(const char* what);
[[noreturn]] void throw_negative_capacity(std::ptrdiff_t capacity);

enum class ChanOp { done, would_block, closed };

// The shared state of one channel. It is reference-counted so that a waiter woken by the
// channel's destruction can still leave its queues safely.
//
// Two modes. Fast: nobody waits, and a buffered channel's values go in and out of a lock-free ring
// without the lock (producers and consumers touch separate cache lines). Slow: someone waits (or
// the channel is unbuffered or closed), and every operation takes the lock, so the waiters' queues
// and the ring change together. A party about to wait switches to slow mode under the lock and
// waits for the fast operations in flight to finish (each announces itself in its side's counter)
// before its last look at the ring; the last waiter to leave switches back.
template <class T>
class ChannelCore {
 public:
  explicit ChannelCore(std::size_t capacity) : ring_(capacity), slow_(capacity == 0) {}
  ChannelCore(const ChannelCore&) = delete;
  ChannelCore& operator=(const ChannelCore&) = delete;

  SpinLock lock;
  // The members below are guarded by `lock`.
  WaitQueue senders;    // entries with slot = T* (the value on offer)
  WaitQueue receivers;  // entries with slot = std::optional<T>* (where the value goes)
  WaitQueue watchers;   // spool's select: woken when a value may be there, nothing moved
  bool closed = false;
  bool destroyed = false;

  [[nodiscard]] std::size_t capacity() const noexcept { return ring_.capacity(); }
  [[nodiscard]] std::size_t count() const noexcept { return ring_.size(); }

  // --- fast mode, without the lock --------------------------------------------------------------
  // False if in slow mode or full (empty): the caller then takes the lock.
  bool fast_send(T& v) noexcept {
    if (slow_.load(std::memory_order_relaxed)) return false;  // saves the announcement
    senders_in_flight_.fetch_add(1, std::memory_order_seq_cst);
    const bool sent = !slow_.load(std::memory_order_seq_cst) && ring_.try_push(v);
    senders_in_flight_.fetch_sub(1, std::memory_order_release);
    return sent;
  }
  bool fast_recv(std::optional<T>& out) noexcept {
    if (slow_.load(std::memory_order_relaxed)) return false;
    receivers_in_flight_.fetch_add(1, std::memory_order_seq_cst);
    const bool got = !slow_.load(std::memory_order_seq_cst) && ring_.try_pop(out);
    receivers_in_flight_.fetch_sub(1, std::memory_order_release);
    return got;
  }
  [[nodiscard]] bool slow() const noexcept { return slow_.load(std::memory_order_relaxed); }

  // --- under the lock ---------------------------------------------------------------------------
  // Before queuing a waiter: from now on every operation takes the lock. Returns once no fast
  // operation is in flight, so the ring holds still for the caller's last look.
  void enter_slow_locked() noexcept {
    if (slow_.load(std::memory_order_relaxed)) return;
    slow_.store(true, std::memory_order_seq_cst);
    for (int spins = 0; senders_in_flight_.load(std::memory_order_seq_cst) != 0 ||
                        receivers_in_flight_.load(std::memory_order_seq_cst) != 0;) {
      if (++spins < 64) {
        spin_pause();
      } else {
        std::this_thread::yield();
      }
    }
  }
  // After a waiter left: back to fast mode once nobody waits (a buffered, open channel only).
  void settle_locked() noexcept {
    if (slow_.load(std::memory_order_relaxed) && ring_.capacity() != 0 && !closed &&
        senders.empty() && receivers.empty() && watchers.empty()) {
      slow_.store(false, std::memory_order_release);
    }
  }

  // A waiter claimed by this channel: coroutines are resumed now (under the lock, see
  // Waiter::notify); a thread is handed back to be woken after the lock is released.
  static void release(Waiter* w, Waiter*& wake_later) noexcept {
    if (w->is_coroutine()) {
      w->notify();
    } else {
      wake_later = w;
    }
  }

  // Offers `v` (moved from only on success).
  ChanOp send_locked(T& v, Waiter*& wake_later) noexcept {
    if (closed) return ChanOp::closed;
    if (WaitEntry* r = receivers.pop_selectable()) {
      static_cast<std::optional<T>*>(r->slot)->emplace(std::move(v));
      release(r->waiter, wake_later);
      settle_locked();
      return ChanOp::done;
    }
    if (ring_.try_push(v)) {
      wake_watchers();
      return ChanOp::done;
    }
    return ChanOp::would_block;
  }

  // Takes a value into `out`; ChanOp::closed once closed and drained.
  ChanOp recv_locked(std::optional<T>& out, Waiter*& wake_later) noexcept {
    if (ring_.try_pop(out)) {
      // A slot freed: the first blocked sender's value takes it.
      if (WaitEntry* s = senders.pop_selectable()) {
        ring_.try_push(*static_cast<T*>(s->slot));
        release(s->waiter, wake_later);
        settle_locked();
      }
      return ChanOp::done;
    }
    if (WaitEntry* s = senders.pop_selectable()) {
      out.emplace(std::move(*static_cast<T*>(s->slot)));
      release(s->waiter, wake_later);
      settle_locked();
      return ChanOp::done;
    }
    return closed ? ChanOp::closed : ChanOp::would_block;
  }

  // Whether a get() would not block now: a value is queued or offered, or the channel is closed.
  [[nodiscard]] bool recv_ready_locked() const noexcept {
    return count() != 0 || closed || senders.any_waiting();
  }
  [[nodiscard]] bool send_ready_locked() const noexcept {
    return closed || count() < capacity() || receivers.any_waiting();
  }

  void wake_watchers() noexcept {
    if (watchers.empty()) return;
    while (WaitEntry* w = watchers.pop_selectable()) w->waiter->notify();
    settle_locked();
  }

  // Whether the channel was destroyed (taking the lock).
  bool destroyed_now() noexcept {
    std::lock_guard guard(lock);
    return destroyed;
  }

  // Closes; with `destroying`, every waiter wakes with Waiter::kClosed (and throws), otherwise
  // receivers wake with nothing (their optional stays empty) and senders with kClosed.
  void close_locked(bool destroying) noexcept {
    enter_slow_locked();  // for good: closing is checked under the lock
    closed = true;
    if (destroying) destroyed = true;
    while (WaitEntry* e = receivers.pop()) {
      if (e->waiter->try_select(destroying ? Waiter::kClosed : e->index)) e->waiter->notify();
    }
    while (WaitEntry* e = senders.pop()) {
      if (e->waiter->try_select(Waiter::kClosed)) e->waiter->notify();
    }
    while (WaitEntry* e = watchers.pop()) {
      if (e->waiter->try_select(e->index)) e->waiter->notify();
    }
  }

 private:
  Ring<T> ring_;
  alignas(kCacheLine) std::atomic<bool> slow_;
  alignas(kCacheLine) std::atomic<std::uint32_t> senders_in_flight_{0};
  alignas(kCacheLine) std::atomic<std::uint32_t> receivers_in_flight_{0};
};

// How many times a thread retries before it queues itself and sleeps: a partner on another core
// usually answers within a microsecond or two, and sleeping costs more than that. First without
// the lock (fast mode), then with it.
inline constexpr int kFastSpins = 16;
inline constexpr int kChannelSpins = 16;

}  // namespace detail

template <class T>
class Channel {
  static_assert(!std::is_reference_v<T> && std::is_object_v<T>,
                "strand::Channel<T>: T must be an object type (not a reference or void)");
  static_assert(std::is_nothrow_move_constructible_v<T>,
                "strand::Channel<T>: T must be nothrow move-constructible (values are moved "
                "under the channel's lock); wrap it in a std::unique_ptr otherwise");

 public:
  using value_type = T;
  using core_type = detail::ChannelCore<T>;

  // Unbuffered (a rendezvous) for capacity 0; otherwise queues up to `capacity` values.
  // Throws std::invalid_argument for a negative capacity.
  explicit Channel(std::ptrdiff_t capacity = 0)
      : core_(std::make_shared<core_type>(checked(capacity))) {}
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;
  // Closes the channel; threads and coroutines still waiting on it wake with ChannelClosed.
  ~Channel() {
    std::lock_guard lock(core_->lock);
    core_->close_locked(/*destroying=*/true);
  }

  // Blocks until a receiver takes `v` (unbuffered) or there is room for it. Throws ChannelClosed
  // if the channel is closed (before or while waiting).
  void put(T v) { put_until(v, std::nullopt); }
  // Blocks until a value is there. Empty once the channel is closed and drained.
  std::optional<T> get() { return get_until(std::nullopt); }

  // Never blocks: false if no receiver is waiting and the buffer is full (`v` is then left as it
  // was). Throws ChannelClosed on a closed channel.
  bool try_put(T&& v) { return try_put_ref(v); }
  bool try_put(const T& v) {
    T copy(v);
    return try_put_ref(copy);
  }
  // Never blocks: empty if nothing is there now (see closed()).
  std::optional<T> try_get() {
    std::optional<T> out;
    if (core_->fast_recv(out)) return out;
    detail::Waiter* wake = nullptr;
    {
      std::lock_guard lock(core_->lock);
      core_->recv_locked(out, wake);
    }
    if (wake) wake->notify();
    return out;
  }

  // As put, but gives up after `timeout`: false (and `v` left as it was) if not sent by then.
  template <class Rep, class Period>
  bool put_for(T&& v, std::chrono::duration<Rep, Period> timeout) {
    return put_until(
        v, std::chrono::steady_clock::now() + std::chrono::ceil<std::chrono::nanoseconds>(timeout));
  }
  template <class Rep, class Period>
  bool put_for(const T& v, std::chrono::duration<Rep, Period> timeout) {
    T copy(v);
    return put_for(std::move(copy), timeout);
  }
  // As get, but gives up after `timeout`: empty if nothing came (or the channel is closed and
  // drained: see closed()).
  template <class Rep, class Period>
  std::optional<T> get_for(std::chrono::duration<Rep, Period> timeout) {
    return get_until(std::chrono::steady_clock::now() +
                     std::chrono::ceil<std::chrono::nanoseconds>(timeout));
  }

  // No more puts; what is queued can still be read. Wakes every waiter. Idempotent.
  void close() noexcept {
    std::lock_guard lock(core_->lock);
    core_->close_locked(/*destroying=*/false);
  }
  // True until close() (spool's word).
  [[nodiscard]] bool alive() const noexcept { return !closed(); }
  [[nodiscard]] bool closed() const noexcept {
    std::lock_guard lock(core_->lock);
    return core_->closed;
  }
  // Values queued now (always 0 for an unbuffered channel).
  [[nodiscard]] std::size_t size() const noexcept {
    std::lock_guard lock(core_->lock);
    return core_->count();
  }
  [[nodiscard]] std::size_t capacity() const noexcept { return core_->capacity(); }

  // --- coroutines -------------------------------------------------------------------------------
  // `co_await ch.recv()`: a std::optional<T>, empty once closed and drained. The coroutine is
  // suspended (its thread runs others) while nothing is there.
  class RecvAwaitable;
  // `co_await ch.send(v)`: suspends while nobody takes `v`; throws ChannelClosed if closed.
  class SendAwaitable;
  [[nodiscard]] RecvAwaitable recv() noexcept { return RecvAwaitable(*this); }
  [[nodiscard]] SendAwaitable send(T v) noexcept { return SendAwaitable(*this, std::move(v)); }

  // --- range-for: reads until closed and drained ------------------------------------------------
  class iterator {
   public:
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(Channel* ch) : ch_(ch) { ++*this; }
    T& operator*() noexcept { return *current_; }
    iterator& operator++() {
      current_ = ch_->get();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) noexcept {
      return !it.current_.has_value();
    }

   private:
    Channel* ch_ = nullptr;
    std::optional<T> current_;
  };
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() noexcept { return {}; }

  // For strand's own layers (select).
  [[nodiscard]] const std::shared_ptr<core_type>& core() const noexcept { return core_; }

 private:
  static std::size_t checked(std::ptrdiff_t capacity) {
    if (capacity < 0) detail::throw_negative_capacity(capacity);
    return static_cast<std::size_t>(capacity);
  }

  bool try_put_ref(T& v) {
    if (core_->fast_send(v)) return true;
    detail::Waiter* wake = nullptr;
    detail::ChanOp r;
    {
      std::lock_guard lock(core_->lock);
      r = core_->send_locked(v, wake);
    }
    if (wake) wake->notify();
    if (r == detail::ChanOp::closed) throw ChannelClosed();
    return r == detail::ChanOp::done;
  }

  // Sends `v` (moved from only on success); false if `deadline` passed first.
  bool put_until(T& v, std::optional<std::chrono::steady_clock::time_point> deadline) {
    core_type& c = *core_;
    const std::size_t half = c.capacity() / 2;
    for (int attempt = 0; attempt < detail::kFastSpins && !c.slow(); ++attempt) {
      if (c.fast_send(v)) return true;
      // Full: let the consumers drain half of it before trying again, looking rarely, so that
      // producer and consumers do not fight over the same cache lines for every value.
      for (int wait = 0; wait < 32 && c.count() > half; ++wait) {
        for (int i = 0; i < 16; ++i) detail::spin_pause();
      }
    }
    detail::Waiter* wake = nullptr;
    for (int attempt = 0;; ++attempt) {
      c.lock.lock();
      detail::ChanOp r = c.send_locked(v, wake);
      if (r == detail::ChanOp::would_block && attempt == detail::kChannelSpins) {
        c.enter_slow_locked();  // about to wait: a last look with the ring holding still
        r = c.send_locked(v, wake);
      }
      if (r != detail::ChanOp::would_block) {
        c.settle_locked();
        c.lock.unlock();
        if (wake) wake->notify();
        if (r == detail::ChanOp::closed) throw ChannelClosed();
        return true;
      }
      if (attempt == detail::kChannelSpins) break;  // keep the lock: queue ourselves
      c.lock.unlock();
      for (int i = 0; i < 8; ++i) detail::spin_pause();
    }
    const std::shared_ptr<core_type> keep = core_;  // outlives a Channel destroyed meanwhile
    detail::Waiter waiter(/*exclusive=*/!deadline);
    detail::WaitEntry entry{&waiter, &v, 0};
    c.senders.push(&entry);
    c.wake_watchers();  // an unbuffered channel now has a value on offer
    c.lock.unlock();
    const int outcome = waiter.wait(deadline);
    if (outcome == detail::Waiter::kAborted) {
      std::lock_guard lock(c.lock);
      c.senders.remove(&entry);
      c.settle_locked();
      return false;
    }
    if (outcome == detail::Waiter::kClosed) {
      // Read under the lock: a later close() or the destructor may write it meanwhile.
      throw c.destroyed_now() ? ChannelClosed::destroyed() : ChannelClosed();
    }
    return true;
  }

  std::optional<T> get_until(std::optional<std::chrono::steady_clock::time_point> deadline) {
    core_type& c = *core_;
    std::optional<T> out;
    for (int attempt = 0; attempt < 16 * detail::kFastSpins && !c.slow(); ++attempt) {
      if (c.fast_recv(out)) return out;
      for (int i = 0; i < 16; ++i) detail::spin_pause();  // look rarely: see put_until
    }
    detail::Waiter* wake = nullptr;
    for (int attempt = 0;; ++attempt) {
      c.lock.lock();
      detail::ChanOp r = c.recv_locked(out, wake);
      if (r == detail::ChanOp::would_block && attempt == detail::kChannelSpins) {
        c.enter_slow_locked();
        r = c.recv_locked(out, wake);
      }
      if (r != detail::ChanOp::would_block) {
        c.settle_locked();
        c.lock.unlock();
        if (wake) wake->notify();
        return out;
      }
      if (attempt == detail::kChannelSpins) break;
      c.lock.unlock();
      for (int i = 0; i < 8; ++i) detail::spin_pause();
    }
    const std::shared_ptr<core_type> keep = core_;
    detail::Waiter waiter(/*exclusive=*/!deadline);
    detail::WaitEntry entry{&waiter, &out, 0};
    c.receivers.push(&entry);
    c.lock.unlock();
    const int outcome = waiter.wait(deadline);
    if (outcome == detail::Waiter::kAborted) {
      std::lock_guard lock(c.lock);
      c.receivers.remove(&entry);
      c.settle_locked();
      return std::nullopt;
    }
    if (outcome == detail::Waiter::kClosed) throw ChannelClosed::destroyed();
    return out;
  }

  std::shared_ptr<core_type> core_;
};

// The awaitables keep their queue entry in the coroutine's frame: no allocation per operation.
// A frame destroyed while suspended (its EventLoop destroyed) leaves the channel's queue first.
template <class T>
class Channel<T>::RecvAwaitable {
 public:
  explicit RecvAwaitable(Channel& ch) noexcept : channel_(&ch) {}
  RecvAwaitable(const RecvAwaitable&) = delete;
  RecvAwaitable& operator=(const RecvAwaitable&) = delete;
  ~RecvAwaitable() {
    // Once resumed, the entry is out of the queue (a claimer unlinks it). A frame destroyed while
    // suspended takes itself out under the lock, which also waits for a claimer still moving a
    // value into it.
    if (keep_ && !resumed_) {
      std::lock_guard lock(keep_->lock);
      keep_->receivers.remove(&entry_);
      keep_->settle_locked();
    }
  }

  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> self) {
    core_type& c = *channel_->core_;
    if (c.fast_recv(out_)) return false;
    detail::Waiter* wake = nullptr;
    c.lock.lock();
    detail::ChanOp r = c.recv_locked(out_, wake);
    if (r == detail::ChanOp::would_block) {
      c.enter_slow_locked();
      r = c.recv_locked(out_, wake);
    }
    if (r != detail::ChanOp::would_block) {
      c.settle_locked();
      c.lock.unlock();
      if (wake) wake->notify();
      return false;  // no need to suspend
    }
    detail::Scheduler* scheduler = detail::current_scheduler;
    if (scheduler == nullptr) {
      // Not thrown from here (see SleepFor): await_resume throws it, the coroutine never suspended.
      c.lock.unlock();
      no_scheduler_ = true;
      return false;
    }
    keep_ = channel_->core_;
    waiter_.emplace(self, scheduler);
    entry_ = detail::WaitEntry{&*waiter_, &out_, 0};
    c.receivers.push(&entry_);
    c.lock.unlock();
    return true;
  }
  std::optional<T> await_resume() {
    resumed_ = true;
    if (no_scheduler_) detail::throw_no_scheduler("Channel::recv");
    if (waiter_ && waiter_->selected() == detail::Waiter::kClosed) {
      throw ChannelClosed::destroyed();
    }
    return std::move(out_);
  }

 private:
  Channel* channel_;
  bool resumed_ = false;
  bool no_scheduler_ = false;
  std::shared_ptr<core_type> keep_;
  std::optional<T> out_;
  std::optional<detail::Waiter> waiter_;
  detail::WaitEntry entry_;
};

template <class T>
class Channel<T>::SendAwaitable {
 public:
  SendAwaitable(Channel& ch, T v) noexcept : channel_(&ch), value_(std::move(v)) {}
  SendAwaitable(const SendAwaitable&) = delete;
  SendAwaitable& operator=(const SendAwaitable&) = delete;
  ~SendAwaitable() {
    if (keep_ && !resumed_) {  // see ~RecvAwaitable
      std::lock_guard lock(keep_->lock);
      keep_->senders.remove(&entry_);
      keep_->settle_locked();
    }
  }

  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> self) {
    core_type& c = *channel_->core_;
    if (c.fast_send(value_)) return false;
    detail::Waiter* wake = nullptr;
    c.lock.lock();
    detail::ChanOp r = c.send_locked(value_, wake);
    if (r == detail::ChanOp::would_block) {
      c.enter_slow_locked();
      r = c.send_locked(value_, wake);
    }
    if (r != detail::ChanOp::would_block) {
      c.settle_locked();
      c.lock.unlock();
      if (wake) wake->notify();
      closed_ = r == detail::ChanOp::closed;
      return false;
    }
    detail::Scheduler* scheduler = detail::current_scheduler;
    if (scheduler == nullptr) {
      c.lock.unlock();
      no_scheduler_ = true;  // see RecvAwaitable
      return false;
    }
    keep_ = channel_->core_;
    waiter_.emplace(self, scheduler);
    entry_ = detail::WaitEntry{&*waiter_, &value_, 0};
    c.senders.push(&entry_);
    c.wake_watchers();
    c.lock.unlock();
    return true;
  }
  void await_resume() {
    resumed_ = true;
    if (no_scheduler_) detail::throw_no_scheduler("Channel::send");
    if (closed_) throw ChannelClosed();
    if (waiter_ && waiter_->selected() == detail::Waiter::kClosed) {
      throw keep_->destroyed_now() ? ChannelClosed::destroyed() : ChannelClosed();
    }
  }

 private:
  Channel* channel_;
  T value_;
  bool closed_ = false;
  bool resumed_ = false;
  bool no_scheduler_ = false;
  std::shared_ptr<core_type> keep_;
  std::optional<detail::Waiter> waiter_;
  detail::WaitEntry entry_;
};

}  // namespace strand
