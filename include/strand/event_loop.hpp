// strand/event_loop.hpp — EventLoop: runs coroutines on one thread; spawn_on spreads them on a
// pool.
//
//   strand::Coro<int> main_coro() {
//     co_await strand::sleep_for(10ms);                 // a timer: the thread runs others
//     meanwhile co_await strand::yield();                         // let the other ready coroutines
//     run first int v = co_await pool.submit(heavy);              // a Handle<T>: waits without
//     blocking auto item = co_await channel.recv();              // channels, shared with threads
//     too co_return v;
//   }
//   int v = strand::run(main_coro());                   // like asyncio.run: a loop, to completion
//
//   strand::EventLoop loop;
//   strand::Handle<int> h = loop.spawn(main_coro());    // starts when the loop runs
//   loop.run();                                         // until every spawned coroutine finished
//   strand::Handle<int> p = strand::spawn_on(pool, main_coro());   // resumed on pool workers
//
// An EventLoop runs on the thread that calls run(); schedule/spawn may be called from any thread.
// Destroying a loop destroys the frames of the coroutines it still holds (their handles fail with
// strand::BrokenPromise); a coroutine suspended on a channel or a Handle leaves it cleanly.
#pragma once

#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <queue>
#include <type_traits>
#include <utility>
#include <vector>

#include "strand/coro.hpp"
#include "strand/detail/waiter.hpp"
#include "strand/handle.hpp"
#include "strand/promise.hpp"
#include "strand/thread_pool.hpp"

namespace strand {

class EventLoop;

namespace detail {

[[noreturn]] void throw_no_scheduler(const char* what);  // channel.cpp

// A top-level coroutine owned by a loop (or by nobody, on a pool): frees its frame when it ends.
class RootTask {
 public:
  struct promise_type;
  using handle_type = std::coroutine_handle<promise_type>;

  struct promise_type {
    EventLoop* loop = nullptr;
    promise_type* prev = nullptr;  // the loop's list of live roots
    promise_type* next = nullptr;

    RootTask get_return_object() noexcept { return RootTask{handle_type::from_promise(*this)}; }
    std::suspend_always initial_suspend() const noexcept { return {}; }
    std::suspend_never final_suspend() const noexcept { return {}; }
    void return_void() const noexcept {}
    void unhandled_exception() const noexcept { std::terminate(); }  // drive() catches all
    ~promise_type();
  };

  handle_type frame;
};

template <class T>
RootTask drive(Coro<T> coro, Promise<T> promise) {
  if (!promise.set_running()) co_return;  // cancelled before it started
  try {
    if constexpr (std::is_void_v<T>) {
      co_await std::move(coro);
      promise.set_value();
    } else {
      promise.set_value(co_await std::move(coro));
    }
  } catch (...) {
    promise.set_exception(std::current_exception());
  }
}

// The loop running on this thread, if any.
inline thread_local EventLoop* current_loop = nullptr;

// Resumes coroutines on a ThreadPool's workers (one per pool, never destroyed).
class PoolScheduler final : public Scheduler {
 public:
  explicit PoolScheduler(ThreadPool& pool) noexcept : pool_(&pool) {}
  void schedule(std::coroutine_handle<> coroutine) noexcept override;
  static PoolScheduler& of(ThreadPool& pool);

 private:
  ThreadPool* pool_;
};

}  // namespace detail

class EventLoop final : public detail::Scheduler {
 public:
  EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;
  // Destroys the frames of unfinished coroutines (their handles fail with BrokenPromise).
  ~EventLoop();

  // Hands `coro` to the loop; it starts when the loop runs. Thread-safe.
  template <class T>
  Handle<T> spawn(Coro<T> coro) {
    Promise<T> promise(Status::queued);
    Handle<T> handle = promise.handle();
    detail::RootTask root = detail::drive<T>(std::move(coro), std::move(promise));
    adopt(root.frame);
    return handle;
  }

  // Spawns `coro` and runs the loop until it finished; returns its value or rethrows. Other
  // coroutines run meanwhile; those still unfinished stay for a later run (or the destructor).
  template <class T>
  T run(Coro<T> coro) {
    Handle<T> handle = spawn(std::move(coro));
    run_until([&handle] { return handle.ready(); });
    if constexpr (std::is_void_v<T>) {
      handle.get();
    } else {
      return T(handle.get());
    }
  }
  // Runs until every spawned coroutine has finished.
  void run();

  // Queues `coroutine` to be resumed by the loop's thread. Thread-safe; never resumes inline.
  void schedule(std::coroutine_handle<> coroutine) noexcept override;
  // For sleep_for: resumes `coroutine` at `deadline`. Loop thread only.
  void schedule_at(std::chrono::steady_clock::time_point deadline,
                   std::coroutine_handle<> coroutine);

  // Coroutines spawned and not yet finished.
  [[nodiscard]] std::size_t unfinished() const noexcept;
  // The loop whose thread is running the caller (null outside a loop).
  [[nodiscard]] static EventLoop* current() noexcept { return detail::current_loop; }

 private:
  friend struct detail::RootTask::promise_type;
  template <class Done>
  void run_until(Done done) {
    Session session(*this);
    while (!done()) step();
  }
  struct Session {  // marks the calling thread as this loop's while it runs
    explicit Session(EventLoop& loop);
    ~Session();
    EventLoop* previous_loop;
    detail::Scheduler* previous_scheduler;
  };
  void adopt(detail::RootTask::handle_type frame);
  void forget(detail::RootTask::promise_type& root) noexcept;
  void step();
  void take_remote();
  bool fire_timers();

  struct Timer {
    std::chrono::steady_clock::time_point deadline;
    std::uint64_t sequence;  // equal deadlines fire in the order they were set
    std::coroutine_handle<> coroutine;
    friend bool operator>(const Timer& a, const Timer& b) noexcept {
      return a.deadline != b.deadline ? a.deadline > b.deadline : a.sequence > b.sequence;
    }
  };

  // Loop thread only.
  std::deque<std::coroutine_handle<>> ready_;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
  std::uint64_t timer_sequence_ = 0;
  unsigned since_timer_check_ = 0;

  // From other threads.
  mutable std::mutex remote_mutex_;
  std::vector<std::coroutine_handle<>> remote_;
  std::atomic<bool> remote_pending_{false};
  bool sleeping_ = false;                    // guarded by remote_mutex_
  std::atomic<std::uint32_t> wake_word_{0};  // bumped to wake a sleeping loop

  mutable std::mutex roots_mutex_;
  detail::RootTask::promise_type* roots_ = nullptr;
  std::atomic<std::size_t> unfinished_{0};
};

// Runs `coro` to completion on a new EventLoop in the calling thread (like asyncio.run).
template <class T>
T run(Coro<T> coro) {
  EventLoop loop;
  return loop.run(std::move(coro));
}

// Runs `coro` on `pool`: each time it is resumed, it is resumed by a pool worker. Its handle
// reports the outcome. (sleep_for needs an EventLoop; everything else works on a pool.)
template <class T>
Handle<T> spawn_on(ThreadPool& pool, Coro<T> coro) {
  Promise<T> promise(Status::queued);
  Handle<T> handle = promise.handle();
  detail::RootTask root = detail::drive<T>(std::move(coro), std::move(promise));
  detail::PoolScheduler::of(pool).schedule(root.frame);
  return handle;
}

// A loop running on a thread of its own, created on first use and never destroyed: where
// CoroutineTaskrunner runs calls made outside any loop.
EventLoop& default_loop();

// `co_await strand::sleep_for(10ms)`: resumes after the time passed; the loop runs others
// meanwhile. Throws std::logic_error outside an EventLoop.
//
// The awaiters here check for their loop or scheduler in await_ready, before the coroutine
// suspends: an exception thrown out of await_suspend is legal C++ but a path compilers have got
// wrong, and a plain throw from the coroutine's body is not.
struct SleepFor {
  std::chrono::nanoseconds duration;
  [[nodiscard]] bool await_ready() const;  // throws std::logic_error outside an EventLoop
  void await_suspend(std::coroutine_handle<> self) const;
  void await_resume() const noexcept {}
};
template <class Rep, class Period>
[[nodiscard]] SleepFor sleep_for(std::chrono::duration<Rep, Period> duration) {
  return SleepFor{std::chrono::ceil<std::chrono::nanoseconds>(duration)};
}

// `co_await strand::yield()`: goes to the back of the scheduler's queue (asyncio.sleep(0)).
struct Yield {
  [[nodiscard]] bool await_ready() const {
    if (detail::current_scheduler == nullptr) detail::throw_no_scheduler("yield()");
    return false;
  }
  void await_suspend(std::coroutine_handle<> self) const {
    detail::current_scheduler->schedule(self);
  }
  void await_resume() const noexcept {}
};
[[nodiscard]] inline Yield yield() noexcept {
  return {};
}

namespace detail {

// `co_await handle`: resumed through the coroutine's scheduler when the task finishes, so the
// loop's thread never blocks. A frame destroyed meanwhile is never resumed.
template <class T>
class HandleAwaitable {
 public:
  explicit HandleAwaitable(Handle<T> handle) noexcept : handle_(std::move(handle)) {}
  HandleAwaitable(const HandleAwaitable&) = delete;
  HandleAwaitable& operator=(const HandleAwaitable&) = delete;
  ~HandleAwaitable() {
    if (link_) {
      std::lock_guard lock(link_->mutex);
      link_->coroutine = {};
    }
  }

  bool await_ready() const {
    if (handle_.ready()) return true;
    if (current_scheduler == nullptr) throw_no_scheduler("co_await on a Handle");
    return false;
  }
  void await_suspend(std::coroutine_handle<> self) {
    Scheduler* scheduler = current_scheduler;
    link_ = std::make_shared<Link>();
    link_->coroutine = self;
    link_->scheduler = scheduler;
    // A local copy: the callback may resume (and finish) the coroutine on another thread before
    // on_complete returns, and the frame's handle with it.
    Handle<T> watched = handle_;
    watched.on_complete([link = link_] {
      std::lock_guard lock(link->mutex);
      if (auto coroutine = std::exchange(link->coroutine, {})) link->scheduler->schedule(coroutine);
    });
  }
  T await_resume() const {
    if constexpr (std::is_void_v<T>) {
      handle_.get();
    } else {
      return T(handle_.get());
    }
  }

 private:
  struct Link {
    std::mutex mutex;
    std::coroutine_handle<> coroutine;  // cleared once resumed or destroyed
    Scheduler* scheduler = nullptr;
  };
  Handle<T> handle_;
  std::shared_ptr<Link> link_;
};

}  // namespace detail

template <class T>
detail::HandleAwaitable<T> operator co_await(Handle<T> handle) noexcept {
  return detail::HandleAwaitable<T>(std::move(handle));
}

}  // namespace strand
