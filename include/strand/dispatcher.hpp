// strand/dispatcher.hpp — Dispatcher<R>: many tasks at once, watched as one batch.
//
//   strand::Dispatcher<int> d({.max_concurrency = 4});
//   auto id = d.dispatch(square, 3);        // starts now (or as soon as one of 4 slots frees)
//   d.enqueue(square, 4);                   // starts at run()
//   d.run(5s);                              // starts what is enqueued, waits; false on time-out
//   d.results();                            // {id -> value} of the completed tasks
//   d.status();  d.errors();  d.complete();  d.reset();
//
// Every task is also an ordinary Handle<R> (`handle(id)`), so when_all/when_any/as_completed and
// cancel() work on it as anywhere else. Thread-safe.
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "strand/handle.hpp"
#include "strand/promise.hpp"
#include "strand/target.hpp"
#include "strand/thread_pool.hpp"

namespace strand {

template <class R = void>
class Dispatcher {
 public:
  using Id = std::size_t;
  struct Options {
    Target target = Target::pool;     // where each task runs
    ThreadPool* pool = nullptr;       // for Target::pool; strand::default_pool() if null
    std::size_t max_concurrency = 0;  // at most this many tasks running at once; 0: no limit
  };

  Dispatcher() : Dispatcher(Options{}) {}
  explicit Dispatcher(Options options) : core_(std::make_shared<Core>(options)) {}
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  // Starts f(args...) (or f(stop_token, args...)) now, or as soon as a concurrency slot frees.
  template <class F, class... Args>
  Id dispatch(F&& f, Args&&... args) {
    return core_->add(make_work(std::forward<F>(f), std::forward<Args>(args)...), /*start=*/true);
  }

  // Records f(args...) to start at the next run().
  template <class F, class... Args>
  Id enqueue(F&& f, Args&&... args) {
    return core_->add(make_work(std::forward<F>(f), std::forward<Args>(args)...), /*start=*/false);
  }

  // Starts every enqueued task and waits for all tasks. True if all finished (in time).
  bool run(std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
    core_->start_enqueued();
    const auto deadline =
        timeout ? std::optional(std::chrono::steady_clock::now() + *timeout) : std::nullopt;
    for (const auto& h : handles()) {
      if (deadline) {
        if (!h.wait_until(*deadline)) return false;
      } else {
        h.wait();
      }
    }
    return true;
  }

  // The values of the tasks that completed, by id.
  std::map<Id, R> results() const requires(!std::is_void_v<R>) {
    std::map<Id, R> out;
    const auto hs = handles();
    for (Id id = 0; id < hs.size(); ++id) {
      if (hs[id].status() == Status::completed) out.emplace(id, hs[id].get());
    }
    return out;
  }

  // Every task's status, by id.
  std::map<Id, Status> status() const {
    std::map<Id, Status> out;
    const auto hs = handles();
    for (Id id = 0; id < hs.size(); ++id) out.emplace(id, hs[id].status());
    return out;
  }

  // The exceptions of the tasks that failed, by id.
  std::map<Id, std::exception_ptr> errors() const {
    std::map<Id, std::exception_ptr> out;
    const auto hs = handles();
    for (Id id = 0; id < hs.size(); ++id) {
      if (hs[id].status() == Status::failed) out.emplace(id, hs[id].exception());
    }
    return out;
  }

  // True when every task dispatched or enqueued has finished (an enqueued task that run() has not
  // started yet is not finished).
  [[nodiscard]] bool complete() const {
    for (const auto& h : handles()) {
      if (!h.ready()) return false;
    }
    return true;
  }

  // Cancels every unfinished task and forgets them all; ids start again from 0.
  void reset() { core_->reset(); }

  [[nodiscard]] Handle<R> handle(Id id) const { return core_->handle(id); }
  [[nodiscard]] std::vector<Handle<R>> handles() const { return core_->handles(); }
  [[nodiscard]] std::size_t size() const { return core_->size(); }

 private:
  // One task's work: completes the promise (unless it was cancelled before starting).
  class Work {
   public:
    virtual ~Work() = default;
    virtual void run(Promise<R>& promise) noexcept = 0;
  };

  template <class F, class... A>
  class BoundWork final : public Work {
   public:
    explicit BoundWork(F f, A... a) : f_(std::move(f)), args_(std::move(a)...) {}
    void run(Promise<R>& promise) noexcept override {
      if (!promise.set_running()) return;
      try {
        std::apply(
            [&](auto&... a) {
              const auto token = promise.stop_token();
              if constexpr (std::is_void_v<R>) {
                detail::invoke_maybe_stoppable(f_, token, a...);
                promise.set_value();
              } else {
                promise.set_value(detail::invoke_maybe_stoppable(f_, token, a...));
              }
            },
            args_);
      } catch (...) {
        promise.set_exception(std::current_exception());
      }
    }

   private:
    F f_;
    std::tuple<A...> args_;
  };

  template <class F, class... Args>
  static std::unique_ptr<Work> make_work(F&& f, Args&&... args) {
    using W = BoundWork<std::decay_t<F>, std::decay_t<Args>...>;
    return std::make_unique<W>(std::forward<F>(f), std::forward<Args>(args)...);
  }

  struct Entry {
    Promise<R> promise{Status::queued};
    std::unique_ptr<Work> work;
  };

  // Shared with the running tasks, which start the next waiting task when they finish.
  class Core : public std::enable_shared_from_this<Core> {
   public:
    explicit Core(Options options) : options_(options) {}

    Id add(std::unique_ptr<Work> work, bool start) {
      auto entry = std::make_shared<Entry>();
      entry->work = std::move(work);
      std::unique_lock lock(mutex_);
      const Id id = entries_.size();
      entries_.push_back(entry);
      if (start) {
        ready_.push_back(entry);
      } else {
        enqueued_.push_back(entry);
      }
      start_ready(lock);
      return id;
    }

    void start_enqueued() {
      std::unique_lock lock(mutex_);
      for (auto& e : enqueued_) ready_.push_back(std::move(e));
      enqueued_.clear();
      start_ready(lock);
    }

    void reset() {
      std::vector<std::shared_ptr<Entry>> old;
      {
        std::lock_guard lock(mutex_);
        old.swap(entries_);
        ready_.clear();
        enqueued_.clear();
      }
      for (auto& e : old) e->promise.handle().cancel();
    }

    Handle<R> handle(Id id) const {
      std::lock_guard lock(mutex_);
      if (id >= entries_.size())
        throw std::out_of_range("strand::Dispatcher: no task with that id");
      return entries_[id]->promise.handle();
    }
    std::vector<Handle<R>> handles() const {
      std::lock_guard lock(mutex_);
      std::vector<Handle<R>> out;
      out.reserve(entries_.size());
      for (const auto& e : entries_) out.push_back(e->promise.handle());
      return out;
    }
    std::size_t size() const {
      std::lock_guard lock(mutex_);
      return entries_.size();
    }

   private:
    // Starts ready tasks while slots are free. Called with the lock held. One thread launches at a
    // time: a task that finishes meanwhile (or fails to start) only frees its slot and the loop
    // here picks it up, so a synchronous target does not recurse once per task.
    void start_ready(std::unique_lock<std::mutex>& lock) {
      if (launching_) return;
      launching_ = true;
      for (;;) {
        std::vector<std::shared_ptr<Entry>> launch;
        while (!ready_.empty() &&
               (options_.max_concurrency == 0 || running_ < options_.max_concurrency)) {
          launch.push_back(std::move(ready_.front()));
          ready_.pop_front();
          ++running_;
        }
        if (launch.empty()) break;
        lock.unlock();
        for (auto& e : launch) start(std::move(e));
        lock.lock();
      }
      launching_ = false;
    }

    // A task's slot is free again: start whatever waits for one.
    void slot_freed() noexcept {
      std::unique_lock lock(mutex_);
      --running_;
      start_ready(lock);
    }

    // Runs one task and frees its slot. If an executor drops it unrun (a pool shutting down and
    // cancelling), the task reads cancelled and its slot is freed all the same.
    class Launch {
     public:
      Launch(std::shared_ptr<Core> core, std::shared_ptr<Entry> entry) noexcept
          : core_(std::move(core)), entry_(std::move(entry)) {}
      Launch(Launch&&) noexcept = default;
      Launch& operator=(Launch&&) = delete;
      ~Launch() {
        // During unwinding the executor refused by throwing: start() records that instead.
        if (entry_ && std::uncaught_exceptions() == 0) {
          entry_->promise.handle().cancel();
          core_->slot_freed();
        }
      }
      void operator()() noexcept {
        auto entry = std::move(entry_);
        entry->work->run(entry->promise);
        entry->work.reset();
        core_->slot_freed();
      }

     private:
      std::shared_ptr<Core> core_;
      std::shared_ptr<Entry> entry_;
    };

    void start(std::shared_ptr<Entry> entry) {
      Launch launch(this->shared_from_this(), entry);
      try {
        switch (options_.target) {
          case Target::pool:
            (options_.pool != nullptr ? *options_.pool : default_pool()).post(std::move(launch));
            break;
          case Target::thread:
            std::thread(std::move(launch)).detach();
            break;
          case Target::sync:
          default:
            launch();
            break;
        }
      } catch (...) {  // the pool was shut down, or no thread could be made: the task fails
        entry->promise.set_exception(std::current_exception());
        slot_freed();
      }
    }

    Options options_;
    mutable std::mutex mutex_;
    std::vector<std::shared_ptr<Entry>> entries_;
    std::deque<std::shared_ptr<Entry>> ready_;
    std::vector<std::shared_ptr<Entry>> enqueued_;
    std::size_t running_ = 0;
    bool launching_ = false;
  };

  std::shared_ptr<Core> core_;
};

}  // namespace strand
