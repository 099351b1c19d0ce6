// Asymmetric memory barriers: a cheap one for the hot side of a handshake (a pool push) and an
// expensive one for the rare side (a worker about to sleep).
//
// A push stores the job, then reads whether a worker sleeps; a worker about to sleep says so,
// then looks for jobs. Each side needs a full barrier between its store and its load, or both can
// miss the other (a lost wake-up). A full barrier on every push waits for the push's stores to
// reach memory, and those are cache lines the workers keep reading: most of a push's cost.
// membarrier(2) lets the sleeping side pay instead: it makes every running thread of the process
// execute a full barrier, so the pusher needs only a compiler barrier.
#pragma once

#include <atomic>

namespace strand::detail {

// True once membarrier's private expedited barrier is registered for this process: pushes may
// then publish with release stores and light_barrier(). Otherwise they keep their seq_cst stores
// and heavy_barrier() adds nothing.
[[nodiscard]] inline bool light_pushes() noexcept;

// The pusher's side: orders its store before its following loads, given heavy_barrier() on the
// other side.
inline void light_barrier() noexcept {
  std::atomic_signal_fence(std::memory_order_seq_cst);
}

// The sleeper's side: between announcing the sleep and the last look for work.
void heavy_barrier() noexcept;

// Registers the process for membarrier (once; pools call it when they are made).
void enable_light_pushes() noexcept;

namespace barrier_state {
inline std::atomic<bool> light{false};
}  // namespace barrier_state

inline bool light_pushes() noexcept {
  return barrier_state::light.load(std::memory_order_relaxed);
}

}  // namespace strand::detail
