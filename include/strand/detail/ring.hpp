// strand/detail/ring.hpp — a bounded lock-free ring (multi-producer, multi-consumer).
//
// The buffer of a buffered Channel. Dmitry Vyukov's bounded queue with crossbeam's stamps, which
// allow any capacity (not only powers of two): each slot's stamp says whether it is ready to be
// written (stamp == tail) or read (stamp == head + 1) on the current lap.
#pragma once

#include <atomic>
#include <bit>
#include <cstddef>
#include <memory>
#include <new>
#include <optional>
#include <utility>

#include "strand/detail/waiter.hpp"

namespace strand::detail {

inline constexpr std::size_t kCacheLine = 64;

template <class T>
class Ring {
 public:
  explicit Ring(std::size_t capacity)
      : capacity_(capacity),
        one_lap_(std::bit_ceil(capacity + 1)),
        slots_(capacity ? std::make_unique<Slot[]>(capacity) : nullptr) {
    for (std::size_t i = 0; i < capacity; ++i) slots_[i].stamp.store(i, std::memory_order_relaxed);
  }
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;
  ~Ring() {
    std::optional<T> drop;
    while (try_pop(drop)) drop.reset();
  }

  // Moves `v` in (and only then); false if full.
  bool try_push(T& v) noexcept {
    if (capacity_ == 0) return false;
    std::size_t tail = tail_.load(std::memory_order_relaxed);
    for (;;) {
      const std::size_t index = tail & (one_lap_ - 1);
      const std::size_t lap = tail & ~(one_lap_ - 1);
      Slot& slot = slots_[index];
      const std::size_t stamp = slot.stamp.load(std::memory_order_acquire);
      if (tail == stamp) {
        const std::size_t next = index + 1 < capacity_ ? tail + 1 : lap + one_lap_;
        if (tail_.compare_exchange_weak(tail, next, std::memory_order_seq_cst,
                                        std::memory_order_relaxed)) {
          std::construct_at(&slot.value, std::move(v));
          slot.stamp.store(tail + 1, std::memory_order_release);
          return true;
        }
      } else if (stamp + one_lap_ == tail + 1) {  // the slot still holds last lap's value
        // (A stale head only makes a full ring of a nearly full one: the caller looks again,
        // and finally with the ring holding still; see ChannelCore.)
        if (head_.load(std::memory_order_seq_cst) + one_lap_ == tail) return false;  // full
        tail = tail_.load(std::memory_order_relaxed);
      } else {  // another producer is between its CAS and its stamp
        spin_pause();
        tail = tail_.load(std::memory_order_relaxed);
      }
    }
  }

  // Moves the oldest value into `out`; false if empty.
  bool try_pop(std::optional<T>& out) noexcept {
    if (capacity_ == 0) return false;
    std::size_t head = head_.load(std::memory_order_relaxed);
    for (;;) {
      const std::size_t index = head & (one_lap_ - 1);
      const std::size_t lap = head & ~(one_lap_ - 1);
      Slot& slot = slots_[index];
      const std::size_t stamp = slot.stamp.load(std::memory_order_acquire);
      if (head + 1 == stamp) {
        const std::size_t next = index + 1 < capacity_ ? head + 1 : lap + one_lap_;
        if (head_.compare_exchange_weak(head, next, std::memory_order_seq_cst,
                                        std::memory_order_relaxed)) {
          out.emplace(std::move(slot.value));
          std::destroy_at(&slot.value);
          slot.stamp.store(head + one_lap_, std::memory_order_release);
          return true;
        }
      } else if (stamp == head) {  // not written yet on this lap
        if (tail_.load(std::memory_order_seq_cst) == head) return false;  // empty
        head = head_.load(std::memory_order_relaxed);
      } else {
        spin_pause();
        head = head_.load(std::memory_order_relaxed);
      }
    }
  }

  // Exact when no push or pop runs concurrently (the channel's slow mode); a snapshot otherwise.
  [[nodiscard]] std::size_t size() const noexcept {
    for (;;) {
      const std::size_t tail = tail_.load(std::memory_order_seq_cst);
      const std::size_t head = head_.load(std::memory_order_seq_cst);
      if (tail_.load(std::memory_order_seq_cst) != tail) continue;
      const std::size_t hix = head & (one_lap_ - 1);
      const std::size_t tix = tail & (one_lap_ - 1);
      if (hix < tix) return tix - hix;
      if (hix > tix) return capacity_ - hix + tix;
      return tail == head ? 0 : capacity_;
    }
  }
  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }

 private:
  struct Slot {
    Slot() noexcept {}
    ~Slot() {}
    std::atomic<std::size_t> stamp{0};
    union {
      T value;
    };
  };

  const std::size_t capacity_;
  const std::size_t one_lap_;
  const std::unique_ptr<Slot[]> slots_;
  // Producers and consumers each write their own cache line.
  alignas(kCacheLine) std::atomic<std::size_t> head_{0};
  alignas(kCacheLine) std::atomic<std::size_t> tail_{0};
};

}  // namespace strand::detail
