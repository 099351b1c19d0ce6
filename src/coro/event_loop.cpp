#include "strand/event_loop.hpp"

#include <map>
#include <stdexcept>
#include <thread>

#include "strand/detail/futex.hpp"

namespace strand {
namespace detail {

RootTask::promise_type::~promise_type() {
  if (loop != nullptr) loop->forget(*this);
}

void PoolScheduler::schedule(std::coroutine_handle<> coroutine) noexcept {
  try {
    pool_->post([this, coroutine] {
      Scheduler* previous = std::exchange(current_scheduler, this);
      coroutine.resume();
      current_scheduler = previous;
    });
  } catch (...) {
    // The pool is shut down: the coroutine can never run again. Destroying its frame from here
    // could race with its owner, so it is reported and left suspended.
    report_error("strand: a coroutine could not be resumed on its pool", std::current_exception());
  }
}

PoolScheduler& PoolScheduler::of(ThreadPool& pool) {
  // One scheduler per pool, never freed: coroutines may hold it as long as they live.
  static std::mutex mutex;
  static auto* schedulers = new std::map<ThreadPool*, std::unique_ptr<PoolScheduler>>();
  std::lock_guard lock(mutex);
  auto& slot = (*schedulers)[&pool];
  if (!slot) slot = std::make_unique<PoolScheduler>(pool);
  return *slot;
}

}  // namespace detail

bool SleepFor::await_ready() const {
  if (duration <= duration.zero()) return true;
  if (detail::current_loop == nullptr) {
    throw std::logic_error("strand: sleep_for needs an EventLoop (this coroutine is not on one)");
  }
  return false;
}

void SleepFor::await_suspend(std::coroutine_handle<> self) const {
  detail::current_loop->schedule_at(std::chrono::steady_clock::now() + duration, self);
}

EventLoop::EventLoop() = default;

EventLoop::~EventLoop() {
  // Destroying a root's frame runs its promise's destructor, which unlinks it (forget).
  for (;;) {
    detail::RootTask::promise_type* root;
    {
      std::lock_guard lock(roots_mutex_);
      root = roots_;
    }
    if (root == nullptr) break;
    detail::RootTask::handle_type::from_promise(*root).destroy();
  }
}

EventLoop::Session::Session(EventLoop& loop)
    : previous_loop(std::exchange(detail::current_loop, &loop)),
      previous_scheduler(std::exchange(detail::current_scheduler, &loop)) {}

EventLoop::Session::~Session() {
  detail::current_loop = previous_loop;
  detail::current_scheduler = previous_scheduler;
}

void EventLoop::adopt(detail::RootTask::handle_type frame) {
  auto& root = frame.promise();
  root.loop = this;
  {
    std::lock_guard lock(roots_mutex_);
    root.next = roots_;
    if (roots_) roots_->prev = &root;
    roots_ = &root;
  }
  unfinished_.fetch_add(1, std::memory_order_relaxed);
  schedule(frame);
}

void EventLoop::forget(detail::RootTask::promise_type& root) noexcept {
  {
    std::lock_guard lock(roots_mutex_);
    (root.prev ? root.prev->next : roots_) = root.next;
    if (root.next) root.next->prev = root.prev;
  }
  unfinished_.fetch_sub(1, std::memory_order_release);
}

std::size_t EventLoop::unfinished() const noexcept {
  return unfinished_.load(std::memory_order_acquire);
}

void EventLoop::run() {
  run_until([this] { return unfinished() == 0; });
}

void EventLoop::schedule(std::coroutine_handle<> coroutine) noexcept {
  if (detail::current_loop == this) {
    ready_.push_back(coroutine);
    return;
  }
  bool wake;
  {
    std::lock_guard lock(remote_mutex_);
    remote_.push_back(coroutine);
    remote_pending_.store(true, std::memory_order_relaxed);
    wake = sleeping_;
  }
  if (wake) {
    wake_word_.fetch_add(1, std::memory_order_release);
    detail::futex_wake_one(wake_word_);
  }
}

void EventLoop::schedule_at(std::chrono::steady_clock::time_point deadline,
                            std::coroutine_handle<> coroutine) {
  timers_.push(Timer{deadline, timer_sequence_++, coroutine});
}

void EventLoop::take_remote() {
  std::lock_guard lock(remote_mutex_);
  for (auto coroutine : remote_) ready_.push_back(coroutine);
  remote_.clear();
  remote_pending_.store(false, std::memory_order_relaxed);
}

bool EventLoop::fire_timers() {
  if (timers_.empty()) return false;
  const auto now = std::chrono::steady_clock::now();
  bool fired = false;
  while (!timers_.empty() && timers_.top().deadline <= now) {
    ready_.push_back(timers_.top().coroutine);
    timers_.pop();
    fired = true;
  }
  return fired;
}

void EventLoop::step() {
  if (remote_pending_.load(std::memory_order_relaxed)) take_remote();
  // Timers are checked when nothing else is ready, and every 64 resumptions so a busy loop still
  // wakes its sleepers on time.
  if (ready_.empty() || ++since_timer_check_ >= 64) {
    since_timer_check_ = 0;
    fire_timers();
  }
  if (!ready_.empty()) {
    auto coroutine = ready_.front();
    ready_.pop_front();
    coroutine.resume();
    return;
  }
  // Nothing to run: sleep until another thread schedules something or the next timer is due.
  const std::uint32_t seen = wake_word_.load(std::memory_order_acquire);
  {
    std::lock_guard lock(remote_mutex_);
    if (!remote_.empty()) return;
    sleeping_ = true;
  }
  if (timers_.empty()) {
    detail::futex_wait(wake_word_, seen);
  } else {
    detail::futex_wait_until(wake_word_, seen, timers_.top().deadline);
  }
  std::lock_guard lock(remote_mutex_);
  sleeping_ = false;
}

EventLoop& default_loop() {
  // Never destroyed, like default_pool(): coroutines still suspended at exit touch nothing freed.
  static EventLoop* loop = [] {
    auto* created = new EventLoop();
    std::thread([created] {
      // Runs forever: a coroutine that never finishes keeps the loop alive.
      struct Forever {
        static Coro<void> wait() {
          for (;;) co_await sleep_for(std::chrono::hours(24));
        }
      };
      created->run(Forever::wait());
    }).detach();
    return created;
  }();
  return *loop;
}

}  // namespace strand
