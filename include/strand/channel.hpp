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
// is still blocked on it (thread or coroutine) wakes with ChannelClosed ("destroyed while waiting").
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
#include <type_traits>
#include <utility>

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

// The shared state of one channel. Every member is guarded by `lock`. It is reference-counted so
// that a waiter woken by the channel's destruction can still leave its queues safely.
template <class T>
class ChannelCore {
 public:
  explicit ChannelCore(std::size_t capacity)
      : capacity_(capacity), slots_(capacity ? std::make_unique<Slot[]>(capacity) : nullptr) {}
  ChannelCore(const ChannelCore&) = delete;
  ChannelCore& operator=(const ChannelCore&) = delete;
  ~ChannelCore() {
    while (count_ != 0) pop_front();
  }

  SpinLock lock;
  WaitQueue senders;    // entries with slot = T* (the value on offer)
  WaitQueue receivers;  // entries with slot = std::optional<T>* (where the value goes)
  WaitQueue watchers;   // spool's select: woken when a value may be there, nothing moved
  bool closed = false;
  bool destroyed = false;

  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
  [[nodiscard]] std::size_t count() const noexcept { return count_; }

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
      return ChanOp::done;
    }
    if (count_ < capacity_) {
      push_back(std::move(v));
      wake_watchers();
      return ChanOp::done;
    }
    return ChanOp::would_block;
  }

  // Takes a value into `out`; ChanOp::closed once closed and drained.
  ChanOp recv_locked(std::optional<T>& out, Waiter*& wake_later) noexcept {
    if (count_ != 0) {
      out.emplace(std::move(front()));
      pop_front();
      // A slot freed: the first blocked sender's value takes it.
      if (WaitEntry* s = senders.pop_selectable()) {
        push_back(std::move(*static_cast<T*>(s->slot)));
        release(s->waiter, wake_later);
      }
      return ChanOp::done;
    }
    if (WaitEntry* s = senders.pop_selectable()) {
      out.emplace(std::move(*static_cast<T*>(s->slot)));
      release(s->waiter, wake_later);
      return ChanOp::done;
    }
    return closed ? ChanOp::closed : ChanOp::would_block;
  }

  // Whether a get() would not block now: a value is queued or offered, or the channel is closed.
  [[nodiscard]] bool recv_ready_locked() const noexcept {
    return count_ != 0 || closed || senders.any_waiting();
  }
  [[nodiscard]] bool send_ready_locked() const noexcept {
    return closed || count_ < capacity_ || receivers.any_waiting();
  }

  void wake_watchers() noexcept {
    while (WaitEntry* w = watchers.pop_selectable()) w->waiter->notify();
  }

  // Closes; with `destroying`, every waiter wakes with Waiter::kClosed (and throws), otherwise
  // receivers wake with nothing (their optional stays empty) and senders with kClosed.
  void close_locked(bool destroying) noexcept {
    closed = true;
    destroyed = destroyed || destroying;
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
  union Slot {
    Slot() noexcept {}
    ~Slot() {}
    T value;
  };

  T& front() noexcept { return slots_[head_].value; }
  void pop_front() noexcept {
    std::destroy_at(&slots_[head_].value);
    head_ = head_ + 1 == capacity_ ? 0 : head_ + 1;
    --count_;
  }
  void push_back(T&& v) noexcept {
    std::size_t tail = head_ + count_;
    if (tail >= capacity_) tail -= capacity_;
    std::construct_at(&slots_[tail].value, std::move(v));
    ++count_;
  }

  std::size_t capacity_;
  std::unique_ptr<Slot[]> slots_;
  std::size_t head_ = 0;
  std::size_t count_ = 0;
};

// How many times a thread retries before it queues itself and sleeps: a partner on another core
// usually answers within a microsecond or two, and sleeping costs more than that.
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
    return put_until(v, std::chrono::steady_clock::now() +
                            std::chrono::ceil<std::chrono::nanoseconds>(timeout));
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
    detail::Waiter* wake = nullptr;
    for (int attempt = 0;; ++attempt) {
      c.lock.lock();
      const detail::ChanOp r = c.send_locked(v, wake);
      if (r != detail::ChanOp::would_block) {
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
    detail::Waiter waiter;
    detail::WaitEntry entry{&waiter, &v, 0};
    c.senders.push(&entry);
    c.wake_watchers();  // an unbuffered channel now has a value on offer
    c.lock.unlock();
    const int outcome = waiter.wait(deadline);
    if (outcome == detail::Waiter::kAborted) {
      std::lock_guard lock(c.lock);
      c.senders.remove(&entry);
      return false;
    }
    if (outcome == detail::Waiter::kClosed) {
      throw c.destroyed ? ChannelClosed::destroyed() : ChannelClosed();
    }
    return true;
  }

  std::optional<T> get_until(std::optional<std::chrono::steady_clock::time_point> deadline) {
    core_type& c = *core_;
    std::optional<T> out;
    detail::Waiter* wake = nullptr;
    for (int attempt = 0;; ++attempt) {
      c.lock.lock();
      const detail::ChanOp r = c.recv_locked(out, wake);
      if (r != detail::ChanOp::would_block) {
        c.lock.unlock();
        if (wake) wake->notify();
        return out;
      }
      if (attempt == detail::kChannelSpins) break;
      c.lock.unlock();
      for (int i = 0; i < 8; ++i) detail::spin_pause();
    }
    const std::shared_ptr<core_type> keep = core_;
    detail::Waiter waiter;
    detail::WaitEntry entry{&waiter, &out, 0};
    c.receivers.push(&entry);
    c.lock.unlock();
    const int outcome = waiter.wait(deadline);
    if (outcome == detail::Waiter::kAborted) {
      std::lock_guard lock(c.lock);
      c.receivers.remove(&entry);
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
    }
  }

  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> self) {
    core_type& c = *channel_->core_;
    detail::Waiter* wake = nullptr;
    c.lock.lock();
    if (c.recv_locked(out_, wake) != detail::ChanOp::would_block) {
      c.lock.unlock();
      if (wake) wake->notify();
      return false;  // no need to suspend
    }
    detail::Scheduler* scheduler = detail::current_scheduler;
    if (scheduler == nullptr) {
      c.lock.unlock();
      detail::throw_no_scheduler("Channel::recv");
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
    if (waiter_ && waiter_->selected() == detail::Waiter::kClosed) {
      throw ChannelClosed::destroyed();
    }
    return std::move(out_);
  }

 private:
  Channel* channel_;
  bool resumed_ = false;
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
    }
  }

  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> self) {
    core_type& c = *channel_->core_;
    detail::Waiter* wake = nullptr;
    c.lock.lock();
    const detail::ChanOp r = c.send_locked(value_, wake);
    if (r != detail::ChanOp::would_block) {
      c.lock.unlock();
      if (wake) wake->notify();
      closed_ = r == detail::ChanOp::closed;
      return false;
    }
    detail::Scheduler* scheduler = detail::current_scheduler;
    if (scheduler == nullptr) {
      c.lock.unlock();
      detail::throw_no_scheduler("Channel::send");
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
    if (closed_) throw ChannelClosed();
    if (waiter_ && waiter_->selected() == detail::Waiter::kClosed) {
      throw keep_->destroyed ? ChannelClosed::destroyed() : ChannelClosed();
    }
  }

 private:
  Channel* channel_;
  T value_;
  bool closed_ = false;
  bool resumed_ = false;
  std::shared_ptr<core_type> keep_;
  std::optional<detail::Waiter> waiter_;
  detail::WaitEntry entry_;
};

}  // namespace strand
