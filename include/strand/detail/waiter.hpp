// strand/detail/waiter.hpp — a party blocked on channels: a thread or a suspended coroutine.
//
// A Waiter is what a channel wakes. It is either a thread (sleeping on a futex word) or a coroutine
// (resumed through its Scheduler: an EventLoop or a pool). One Waiter may stand in the queues of
// several channels at once (a select); the first channel to claim it with try_select() wins, the
// others find it taken and drop its entry. Whoever claims a waiter moves the value in or out of its
// entry's slot under that channel's lock, then notifies it.
#pragma once

#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstdint>
#include <optional>
#include <thread>

#include "strand/detail/futex.hpp"

namespace strand::detail {

// Where a suspended coroutine is resumed. schedule() is thread-safe and never resumes inline: it
// queues the coroutine to be resumed by the scheduler's own thread(s).
class Scheduler {
 public:
  virtual void schedule(std::coroutine_handle<> coroutine) noexcept = 0;

 protected:
  ~Scheduler() = default;
};

// The scheduler running the current thread's coroutine (null on a plain thread).
inline thread_local Scheduler* current_scheduler = nullptr;

inline void spin_pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// A lock for the short critical sections of a channel: spins, then yields the core. (A channel's
// sections are a few dozen instructions; a futex-based mutex costs more than they do.)
class SpinLock {
 public:
  void lock() noexcept {
    if (!locked_.exchange(true, std::memory_order_acquire)) [[likely]] {
      return;
    }
    lock_contended();
  }
  bool try_lock() noexcept { return !locked_.exchange(true, std::memory_order_acquire); }
  void unlock() noexcept { locked_.store(false, std::memory_order_release); }

 private:
  [[gnu::noinline]] void lock_contended() noexcept {
    for (int spins = 0; locked_.exchange(true, std::memory_order_acquire);) {
      while (locked_.load(std::memory_order_relaxed)) {
        if (++spins < 64) {
          spin_pause();
        } else {
          std::this_thread::yield();
        }
      }
    }
  }
  std::atomic<bool> locked_{false};
};

class Waiter {
 public:
  // What selected() holds besides the index of the case that fired.
  static constexpr int kWaiting = -1;
  static constexpr int kAborted = -2;  // the waiter gave up (timeout) before anyone claimed it
  static constexpr int kClosed = -3;   // woken because the channel was closed or destroyed

  // A thread. `exclusive`: it waits in one queue only and never gives up (no select, no
  // timeout), so the channel holding that queue's lock may claim it without an atomic exchange.
  explicit Waiter(bool exclusive = false) noexcept : exclusive_(exclusive) {}
  // A coroutine: always exclusive (it waits on one channel; only its frame's destruction, which
  // takes the channel's lock, takes it out).
  Waiter(std::coroutine_handle<> coroutine, Scheduler* scheduler) noexcept
      : coroutine_(coroutine), scheduler_(scheduler), exclusive_(true) {}
  Waiter(const Waiter&) = delete;
  Waiter& operator=(const Waiter&) = delete;

  // Claims the waiter for case `index`; false if someone else claimed it (or it gave up) first.
  bool try_select(int index) noexcept {
    if (exclusive_) {  // nobody else can claim it: we hold the lock of its only queue
      selected_.store(index, std::memory_order_relaxed);
      return true;
    }
    int expected = kWaiting;
    return selected_.compare_exchange_strong(expected, index, std::memory_order_acq_rel,
                                             std::memory_order_acquire);
  }
  [[nodiscard]] int selected() const noexcept { return selected_.load(std::memory_order_acquire); }
  [[nodiscard]] bool is_coroutine() const noexcept { return static_cast<bool>(coroutine_); }

  // Wakes the claimed waiter. For a coroutine it is called under the channel's lock, so a frame
  // being destroyed (which takes that lock to leave the queue) never races with its resumption.
  // A thread still spinning is not sleeping in the kernel: it needs no system call to wake.
  void notify() noexcept {
    if (coroutine_) {
      scheduler_->schedule(coroutine_);
    } else if (woken_.exchange(kWoken, std::memory_order_acq_rel) == kSleeping) {
      futex_wake_one(woken_);
    }
  }

  // Thread side: blocks until notified, or until `deadline` (then tries to give up). Returns the
  // selected case, kClosed, or kAborted if the deadline passed with nobody claiming the waiter.
  int wait(std::optional<std::chrono::steady_clock::time_point> deadline = std::nullopt) noexcept {
    // Spin first: a partner on another core usually answers within a few microseconds, and a
    // futex sleep and wake cost more than that.
    for (int i = 0; i < 256; ++i) {
      if (woken_.load(std::memory_order_acquire) == kWoken) return selected();
      spin_pause();
    }
    std::uint32_t state = kSpinning;
    // Announce the sleep, so that notify() makes the system call only when someone sleeps.
    if (!woken_.compare_exchange_strong(state, kSleeping, std::memory_order_acq_rel)) {
      return selected();  // woken meanwhile
    }
    while (woken_.load(std::memory_order_acquire) != kWoken) {
      if (!deadline) {
        futex_wait(woken_, kSleeping);
      } else if (!futex_wait_until(woken_, kSleeping, *deadline) &&
                 woken_.load(std::memory_order_acquire) != kWoken) {
        int expected = kWaiting;
        if (selected_.compare_exchange_strong(expected, kAborted, std::memory_order_acq_rel)) {
          return kAborted;
        }
        deadline.reset();  // claimed just now: the value is on its way, wait for it
      }
    }
    return selected();
  }

 private:
  static constexpr std::uint32_t kSpinning = 0;
  static constexpr std::uint32_t kSleeping = 1;
  static constexpr std::uint32_t kWoken = 2;

  std::atomic<int> selected_{kWaiting};
  std::atomic<std::uint32_t> woken_{kSpinning};
  std::coroutine_handle<> coroutine_;
  Scheduler* scheduler_ = nullptr;
  bool exclusive_ = false;
};

// A waiter's place in one channel's queue. `slot` points at the value a sender offers (T*) or at
// where a receiver wants it (std::optional<T>*); null for a readiness watcher (spool's select).
struct WaitEntry {
  Waiter* waiter = nullptr;
  void* slot = nullptr;
  int index = 0;
  WaitEntry* prev = nullptr;
  WaitEntry* next = nullptr;
  bool linked = false;
};

// An intrusive FIFO of entries (no allocation: entries live in the waiter's stack or frame).
class WaitQueue {
 public:
  [[nodiscard]] bool empty() const noexcept { return head_ == nullptr; }
  void push(WaitEntry* e) noexcept {
    e->prev = tail_;
    e->next = nullptr;
    (tail_ ? tail_->next : head_) = e;
    tail_ = e;
    e->linked = true;
  }
  void remove(WaitEntry* e) noexcept {
    if (!e->linked) return;
    (e->prev ? e->prev->next : head_) = e->next;
    (e->next ? e->next->prev : tail_) = e->prev;
    e->prev = e->next = nullptr;
    e->linked = false;
  }
  WaitEntry* pop() noexcept {
    WaitEntry* e = head_;
    if (e) remove(e);
    return e;
  }
  // Pops the first entry whose waiter can still be claimed and claims it; drops stale ones.
  WaitEntry* pop_selectable() noexcept {
    while (WaitEntry* e = pop()) {
      if (e->waiter->try_select(e->index)) return e;
    }
    return nullptr;
  }
  // True if some entry's waiter is still waiting (without claiming it).
  [[nodiscard]] bool any_waiting() const noexcept {
    for (WaitEntry* e = head_; e; e = e->next) {
      if (e->waiter->selected() == Waiter::kWaiting) return true;
    }
    return false;
  }
  WaitEntry* head() const noexcept { return head_; }

 private:
  WaitEntry* head_ = nullptr;
  WaitEntry* tail_ = nullptr;
};

}  // namespace strand::detail
