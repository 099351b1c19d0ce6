// A Chase-Lev work-stealing deque (Chase & Lev 2005; memory orders after Le et al., PPoPP 2013).
//
// One owner pushes and pops at the bottom; any thread steals from the top. Slots are atomics and
// every hand-off is an acquire/release pair (no stand-alone fences), so ThreadSanitizer can follow
// every ownership transfer. Rings only grow; old rings are kept until the deque dies, because a
// thief may still be reading one.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "strand/detail/job.hpp"

namespace strand::detail {

class WorkStealingDeque {
 public:
  WorkStealingDeque() = default;
  WorkStealingDeque(const WorkStealingDeque&) = delete;
  WorkStealingDeque& operator=(const WorkStealingDeque&) = delete;

  // Owner only. `light`: publish with a release store, the caller's light_barrier() and the
  // sleepers' heavy_barrier() ordering it against the wake-up check (see asymmetric_barrier.hpp);
  // otherwise with a seq_cst store: a pusher then checks for sleeping workers, and a sleeper,
  // having announced itself, checks this deque; one of the two must see the other.
  void push(Job* job, bool light) {
    const std::int64_t b = bottom_.load(std::memory_order_relaxed);
    Ring* ring = ring_.load(std::memory_order_relaxed);
    // top_ only grows, so a stale copy under-estimates the free room: re-read it (a cache line the
    // thieves keep writing) only when the ring looks full.
    if (ring == nullptr || b - cached_top_ >= ring->capacity) {
      cached_top_ = top_.load(std::memory_order_acquire);
      if (ring == nullptr || b - cached_top_ >= ring->capacity) ring = grow(ring, cached_top_, b);
    }
    ring->put(b, job);
    bottom_.store(b + 1, light ? std::memory_order_release : std::memory_order_seq_cst);
  }

  // Owner only: the most recently pushed job, or null.
  Job* pop() noexcept {
    const std::int64_t b = bottom_.load(std::memory_order_relaxed) - 1;
    Ring* ring = ring_.load(std::memory_order_relaxed);
    bottom_.store(b, std::memory_order_seq_cst);
    std::int64_t t = top_.load(std::memory_order_seq_cst);
    if (t > b) {  // empty
      bottom_.store(b + 1, std::memory_order_release);
      return nullptr;
    }
    Job* job = ring->get(b);
    if (t == b) {  // the last job: thieves may be after it too
      if (!top_.compare_exchange_strong(t, t + 1, std::memory_order_seq_cst,
                                        std::memory_order_relaxed)) {
        job = nullptr;
      }
      bottom_.store(b + 1, std::memory_order_release);
    }
    return job;
  }

  // Anyone: the oldest job, or null (empty, or another thread took it first).
  Job* steal() noexcept {
    std::int64_t t = top_.load(std::memory_order_seq_cst);
    const std::int64_t b = bottom_.load(std::memory_order_seq_cst);
    if (t >= b) return nullptr;
    Ring* ring = ring_.load(std::memory_order_acquire);
    Job* job = ring->get(t);
    if (!top_.compare_exchange_strong(t, t + 1, std::memory_order_seq_cst,
                                      std::memory_order_relaxed)) {
      return nullptr;
    }
    return job;
  }

  [[nodiscard]] bool maybe_nonempty() const noexcept {
    return top_.load(std::memory_order_seq_cst) < bottom_.load(std::memory_order_seq_cst);
  }

 private:
  struct Ring {
    explicit Ring(std::int64_t cap)
        : capacity(cap), mask(cap - 1), slots(std::make_unique<std::atomic<Job*>[]>(cap)) {}
    Job* get(std::int64_t i) const noexcept {
      return slots[i & mask].load(std::memory_order_acquire);
    }
    void put(std::int64_t i, Job* job) noexcept {
      slots[i & mask].store(job, std::memory_order_release);
    }
    std::int64_t capacity;
    std::int64_t mask;
    std::unique_ptr<std::atomic<Job*>[]> slots;
  };

  Ring* grow(Ring* old, std::int64_t t, std::int64_t b) {
    auto next = std::make_unique<Ring>(old == nullptr ? kInitialCapacity : old->capacity * 2);
    for (std::int64_t i = t; i < b; ++i) next->put(i, old->get(i));
    Ring* raw = next.get();
    rings_.push_back(std::move(next));
    ring_.store(raw, std::memory_order_release);
    return raw;
  }

  static constexpr std::int64_t kInitialCapacity = 256;

  alignas(64) std::atomic<std::int64_t> top_{0};
  alignas(64) std::atomic<std::int64_t> bottom_{0};
  alignas(64) std::atomic<Ring*> ring_{nullptr};
  std::vector<std::unique_ptr<Ring>> rings_;  // owner only
  std::int64_t cached_top_ = 0;               // owner only: a lower bound of top_
};

}  // namespace strand::detail
