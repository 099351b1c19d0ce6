// What a pool queue holds: a type-erased unit of work that frees itself.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <new>
#include <stop_token>
#include <type_traits>
#include <utility>

#include "strand/detail/state.hpp"
#include "strand/errors.hpp"

namespace strand::detail {

class PoolCore;

// Its address names the calling thread (cheaper to compare than std::this_thread::get_id()).
inline thread_local char this_thread_token = 0;

// Memory for jobs: per-thread free lists, with blocks freed elsewhere handed back in batches (see
// src/core/job_allocator.cpp). flush_job_frees hands back this thread's pending batch now.
void* allocate_job(std::size_t size);
void deallocate_job(void* p) noexcept;
void flush_job_frees() noexcept;

class Job {
 public:
  static void* operator new(std::size_t size) { return allocate_job(size); }
  static void operator delete(void* p) noexcept { deallocate_job(p); }
  // Over-aligned jobs (a function capturing an over-aligned object) take the ordinary route.
  static void* operator new(std::size_t size, std::align_val_t al) {
    return ::operator new(size, al);
  }
  static void operator delete(void* p, std::align_val_t al) noexcept { ::operator delete(p, al); }

  // Executes, then frees the job. `pool_stop` is requested when the pool shuts down cancelling.
  virtual void run(const std::stop_token& pool_stop) noexcept = 0;
  // Never executed (the pool is shutting down and cancelling): frees the job.
  virtual void discard() noexcept = 0;
  // Jobs with the same non-null key report their completion in batches (see TaskGroup).
  [[nodiscard]] virtual const void* batch_key() const noexcept { return nullptr; }

 protected:
  ~Job() = default;
};

// A thread hands the completions it has batched to their TaskGroup: always, or only if `next_key`
// (the batch key of the job about to run) belongs to another group. Pools call it before running
// a job and before searching, sleeping or leaving, so a batch never outlives the run of its group.
void flush_group_completions(const void* next_key = nullptr) noexcept;

// Pushes `job` to `pool`. False (and the job untouched) if the pool no longer accepts work.
bool pool_push(PoolCore& pool, Job* job) noexcept;
[[nodiscard]] const std::string& pool_name(const PoolCore& pool) noexcept;

// A task with a handle: the job and the handle's state in one allocation. `Body` is called as
// `body(state, stop_token)` and must complete the state.
template <class T, class Body>
class StatefulJob final : public State<T>, public Job {
 public:
  explicit StatefulJob(Body body, bool stoppable)
      : State<T>(Status::queued, /*refs: handle + queue*/ 2), body_(std::move(body)) {
    if (stoppable) this->enable_stop();
  }

  void run(const std::stop_token& pool_stop) noexcept override {
    if (this->try_start()) {
      if (this->stop_token().stop_possible()) {
        // A cancelling shutdown of the pool cancels this task too.
        std::stop_callback link(pool_stop, [this]() noexcept { this->cancel(); });
        (*body_)(static_cast<State<T>&>(*this), this->stop_token());
      } else {
        (*body_)(static_cast<State<T>&>(*this), std::stop_token());
      }
    }
    body_.reset();  // free what the function captured now, not when the last handle goes
    this->release();
  }
  void discard() noexcept override {
    this->cancel();
    body_.reset();
    this->release();
  }

 private:
  void destroy() noexcept override { delete this; }
  std::optional<Body> body_;
};

// Fire-and-forget: an exception goes to strand's error reporter.
template <class F>
class DetachedJob final : public Job {
 public:
  explicit DetachedJob(F f) : f_(std::move(f)) {}
  void run(const std::stop_token& pool_stop) noexcept override {
    try {
      if constexpr (std::is_invocable_v<F&, std::stop_token>) {
        f_(pool_stop);
      } else {
        f_();
      }
    } catch (...) {
      report_error("strand: a posted pool job threw", std::current_exception());
    }
    delete this;
  }
  void discard() noexcept override { delete this; }

 private:
  F f_;
};

}  // namespace strand::detail
