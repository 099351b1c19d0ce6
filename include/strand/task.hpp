// strand/task.hpp — Task: a named piece of work with prerequisites and a state machine.
//
//   auto t1 = strand::Task::make("t1", [] { return 6 * 7; });
//   auto t2 = t1->then("t2", [] { std::puts("after t1"); });   // t2 requires t1
//   t2->require(other);                                        // ... and `other`
//   for (const auto& done : strand::make({t2})) { /* t1, other, then t2 (see make.hpp) */ }
//   t1->result<int>();                                          // 42
//
// The state machine (cs.taskqueue's words; an event not listed throws strand::TaskError):
//
//   PENDING   --queue-->    QUEUED       PENDING, QUEUED --dispatch--> RUNNING
//   RUNNING   --done-->     DONE         PENDING, QUEUED, RUNNING --fail-->   FAILED
//   FAILED, CANCELLED --retry--> PENDING PENDING, QUEUED, RUNNING --cancel--> CANCELLED
//
// The model is cs.taskqueue's: a task is meant to be repaired and rerun. A function that throws
// leaves its task FAILED (or CANCELLED with cancel_on_exception), which blocks its dependents until
// someone calls retry() and makes it again. DONE is final.
//
// Why one non-template Task with a type-erased result (std::any) rather than Task<T>: a graph mixes
// tasks of every result type, and make(), TaskQueue and to_dot walk it as one kind of node. The
// typed view is result<T>(), which names both types when they differ.
//
// Tasks are shared (std::shared_ptr<Task>, made by Task::make): a task owns its prerequisites, so a
// graph lives as long as the tasks you hold on to. Destroying a long chain does not recurse.
//
// Thread safety: state changes, results and notify() are safe from any thread. Building the graph
// (require, then) is safe from any thread too, but edges added while make() runs over the same
// tasks are seen only by the next make(). Set the options (track, cancel_on_*) before the task
// runs.
#pragma once

#include <any>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "strand/errors.hpp"
#include "strand/handle.hpp"

namespace strand {

enum class TaskState : std::uint8_t { pending, queued, running, done, failed, cancelled };
enum class TaskEvent : std::uint8_t { queue, dispatch, done, fail, cancel, retry };

// "PENDING", "QUEUED", "RUNNING", "DONE", "FAILED", "CANCELLED".
[[nodiscard]] std::string_view to_string(TaskState state) noexcept;
// "queue", "dispatch", "done", "fail", "cancel", "retry".
[[nodiscard]] std::string_view to_string(TaskEvent event) noexcept;
std::ostream& operator<<(std::ostream& out, TaskState state);
std::ostream& operator<<(std::ostream& out, TaskEvent event);

// DONE, FAILED and CANCELLED: the task has finished this run (only retry() leaves
// FAILED/CANCELLED).
[[nodiscard]] constexpr bool is_finished(TaskState state) noexcept {
  return state == TaskState::done || state == TaskState::failed || state == TaskState::cancelled;
}

// Where `event` takes a task in `state`; std::nullopt if the state machine does not allow it.
[[nodiscard]] std::optional<TaskState> next_state(TaskState state, TaskEvent event) noexcept;

// A task misused: an event its state does not allow, a result of the wrong type, a prerequisite
// that failed. Derived: BlockedError, CycleError.
class TaskError : public Error {
 public:
  explicit TaskError(const std::string& what) : Error(what) {}
  // `strand: task "t1": event dispatch is not allowed in state RUNNING`
  TaskError(std::string_view task, TaskState state, TaskEvent event);
};

// Running a task (run(), bg()) whose prerequisites are not all DONE:
// `strand: task "t2" is blocked: prerequisite "t1" is PENDING`
class BlockedError : public TaskError {
 public:
  BlockedError(std::string_view task, std::string_view prerequisite, TaskState state);
};

// require() that would close a cycle; cycle() lists the task names around it, first == last:
// `strand: task "t1" cannot require "t3": that would make a cycle t1 -> t3 -> t2 -> t1`
class CycleError : public TaskError {
 public:
  explicit CycleError(std::vector<std::string> cycle);
  [[nodiscard]] const std::vector<std::string>& cycle() const noexcept { return cycle_; }

 private:
  std::vector<std::string> cycle_;
};

class Task;
using TaskPtr = std::shared_ptr<Task>;

// Called after every transition, on the thread that made it.
using TaskTracker =
    std::function<void(const Task& task, TaskState from, TaskEvent event, TaskState to)>;

struct TaskOptions {
  bool track = false;  // print each transition: `t1 PENDING->dispatch->RUNNING`
  bool cancel_on_exception =
      false;  // a function that throws cancels the task instead of failing it
};

namespace detail {
struct TaskRuntime;  // make(), TaskQueue and to_dot's access to a task's insides (src/graph/)

// The parameter type of a one-argument callable that is not generic (a lambda or a function).
template <class F>
struct sole_parameter : sole_parameter<decltype(&F::operator())> {};
template <class R, class C, class A>
struct sole_parameter<R (C::*)(A) const> {
  using type = std::remove_cvref_t<A>;
};
template <class R, class C, class A>
struct sole_parameter<R (C::*)(A)> {
  using type = std::remove_cvref_t<A>;
};
template <class R, class A>
struct sole_parameter<R (*)(A)> {
  using type = std::remove_cvref_t<A>;
};
template <class F>
concept has_sole_parameter = requires {
  typename sole_parameter<std::decay_t<F>>::type;
};

// A vector whose first N elements live inline: most tasks have one or two prerequisites and
// dependents, and a graph of 100,000 tasks should not cost 200,000 more allocations. The spill
// beyond N is one pointer, so that it stays small: building a graph is mostly writing its tasks to
// memory.
template <class T, std::size_t N>
class SmallVector {
 public:
  void push_back(T value) {
    if (size_ < N) {
      inline_[size_] = std::move(value);
    } else {
      if (!overflow_) overflow_ = std::make_unique<std::vector<T>>();
      overflow_->push_back(std::move(value));
    }
    ++size_;
  }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  T& operator[](std::size_t i) noexcept { return i < N ? inline_[i] : (*overflow_)[i - N]; }
  const T& operator[](std::size_t i) const noexcept {
    return i < N ? inline_[i] : (*overflow_)[i - N];
  }
  [[nodiscard]] std::vector<T> to_vector() const {
    std::vector<T> out;
    out.reserve(size_);
    for (std::size_t i = 0; i < size_; ++i) out.push_back((*this)[i]);
    return out;
  }
  // Moves the elements out, leaving this empty.
  [[nodiscard]] std::vector<T> take() {
    std::vector<T> out;
    out.reserve(size_);
    for (std::size_t i = 0; i < size_; ++i) out.push_back(std::move((*this)[i]));
    clear();
    return out;
  }
  void clear() noexcept {
    for (std::size_t i = 0; i < size_ && i < N; ++i) inline_[i] = T();
    overflow_.reset();
    size_ = 0;
  }
  template <class P>
  void erase_if(P predicate) {
    auto all = take();
    for (auto& x : all) {
      if (!predicate(x)) push_back(std::move(x));
    }
  }

 private:
  std::array<T, N> inline_{};
  std::unique_ptr<std::vector<T>> overflow_;
  std::uint32_t size_ = 0;
};

// A few bytes guarding a task's state, result, callbacks and dependents: held briefly (a state
// change is a handful of instructions; adding or listing dependents copies a few pointers), never
// while user code runs, so a spin is cheaper than a std::mutex (40 bytes, a syscall when it does
// contend) and keeps the task small.
class TaskSpinLock {
 public:
  // Inline: most takes find it free, and building a graph takes two a require().
  void lock() noexcept {
    if (!locked_.exchange(true, std::memory_order_acquire)) return;
    wait_and_lock();
  }
  void unlock() noexcept { locked_.store(false, std::memory_order_release); }

 private:
  void wait_and_lock() noexcept;  // spins briefly, then yields to a descheduled holder
  std::atomic<bool> locked_{false};
};
}  // namespace detail

class Task : public std::enable_shared_from_this<Task> {
  struct Private {};

 public:
  // A task with no function (running it does nothing): give it one later with bg(f, args...).
  static TaskPtr make(std::string name, TaskOptions options = {});
  // A task that calls f(); its return value (any type, or none) is what result<T>() gives back.
  // f must be copyable (it is kept in a std::function).
  template <class F>
  static TaskPtr make(std::string name, F f, TaskOptions options = {}) {
    static_assert(std::is_invocable_v<F&>,
                  "strand::Task::make: the function must be callable with no arguments (bind "
                  "them in a lambda, or give them to bg(f, args...))");
    auto task = make(std::move(name), options);
    task->set_function(std::move(f));
    return task;
  }

  Task(Private, std::string name, TaskOptions options);  // use Task::make
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  ~Task();

  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  [[nodiscard]] TaskState state() const noexcept { return state_.load(std::memory_order_acquire); }

  // ---- the graph ----

  // This task will not run before `other` is DONE. Throws strand::CycleError (naming the cycle) if
  // `other` already depends on this task, itself included. Returns *this.
  Task& require(TaskPtr other);  // by value: then() hands its pointer over with no extra count
  // A new task that requires this one.
  template <class F>
  TaskPtr then(std::string name, F f, TaskOptions options = {}) {
    auto next = make(std::move(name), std::move(f), options);
    next->require_fresh(shared_from_this());
    return next;
  }
  [[nodiscard]] std::vector<TaskPtr> prerequisites() const;
  // The tasks that require this one and are still alive.
  [[nodiscard]] std::vector<TaskPtr> dependents() const;

  // ---- running ----

  // Runs the function in this thread: dispatch, call, then done / fail / cancel. Throws
  // strand::BlockedError if a prerequisite is not DONE, strand::TaskError if not PENDING.
  void run();
  // As run(), on a new thread; the handle completes, fails or reads cancelled as the task ends.
  // The checks (blocked, not PENDING) throw here, before any thread starts.
  Handle<void> bg();
  // Sets the function to f(args...) (arguments copied, as std::thread does), then bg().
  template <class F, class... A>
  Handle<void> bg(F f, A... args) {
    static_assert(std::is_invocable_v<F&, A&...>,
                  "strand::Task::bg: the function cannot be called with these arguments");
    set_function([f = std::move(f), ... args = std::move(args)]() mutable -> decltype(auto) {
      return std::invoke(f, args...);
    });
    return bg();
  }

  // Calls `callback` (taking `Task&` or nothing) once, when the task next finishes (DONE, FAILED or
  // CANCELLED), on the thread that finished it; at once if it has finished already. An exception
  // from the callback goes to strand's error reporter.
  template <class F>
  void notify(F callback) {
    static_assert(std::is_invocable_v<F&, Task&> || std::is_invocable_v<F&>,
                  "strand::Task::notify: the callback must take (strand::Task&) or nothing");
    if constexpr (std::is_invocable_v<F&, Task&>) {
      add_callback(std::function<void(Task&)>(std::move(callback)));
    } else {
      add_callback([callback = std::move(callback)](Task&) mutable { callback(); });
    }
  }

  // Applies `event` as the state machine says; throws strand::TaskError if it is not allowed now.
  // (done/fail/cancel by hand finish the task with no result / a TaskError / a Cancelled.)
  TaskState transition(TaskEvent event);
  // Cancels the task if it has not finished; false if it had. A running function is not stopped;
  // what it returns is dropped.
  bool cancel();
  // FAILED or CANCELLED back to PENDING, forgetting the result, so the next make() runs it again.
  // Throws strand::TaskError from any other state.
  void retry();

  // ---- the outcome ----

  // Once DONE: the value (a reference into the task, valid until retry()), or nothing for
  // result<void>(). FAILED: rethrows the exception. CANCELLED: throws strand::Cancelled with the
  // reason. Unfinished: strand::NotReady. A T that is not the function's return type: TaskError.
  template <class T = void>
  decltype(auto) result() const {
    check_finished_ok();
    if constexpr (!std::is_void_v<T>) {
      const T* value = std::any_cast<T>(&result_);
      if (value == nullptr) throw_wrong_result_type(result_, typeid(T));
      return *value;
    }
  }
  // The exception of a FAILED task (for a CANCELLED one, a strand::Cancelled); null otherwise.
  [[nodiscard]] std::exception_ptr exception() const;

  // ---- options ----

  // true: print every transition to stdout (`t1 PENDING->dispatch->RUNNING`); false: stop.
  Task& track(bool on);
  // Calls `tracker` after every transition.
  Task& track(TaskTracker tracker);
  Task& cancel_on_exception(bool on = true) {
    cancel_on_exception_ = on;
    return *this;
  }
  // After a successful run the predicate sees the result (as `const T&`, `const std::any&`, or not
  // at all); true cancels the task (it can be retried). A predicate that throws fails the task
  // with that exception.
  template <class P>
  Task& cancel_on_result(P predicate) {
    auto& slot = extras().cancel_on_result;
    if constexpr (std::is_invocable_r_v<bool, P&, const std::any&>) {
      slot = std::move(predicate);
    } else if constexpr (std::is_invocable_r_v<bool, P&>) {
      slot = [p = std::move(predicate)](const std::any&) mutable {
        return p();
      };
    } else if constexpr (detail::has_sole_parameter<P>) {
      using T = typename detail::sole_parameter<std::decay_t<P>>::type;
      slot = [this, p = std::move(predicate)](const std::any& result) mutable {
        const T* value = std::any_cast<T>(&result);
        if (value == nullptr) throw_wrong_result_type(result, typeid(T));
        return static_cast<bool>(p(*value));
      };
    } else {
      static_assert(sizeof(P) == 0,
                    "strand::Task::cancel_on_result: the predicate must take the result "
                    "(const T&, not a generic auto), a const std::any&, or nothing, and "
                    "return bool");
    }
    return *this;
  }

  // Sets the function (for a task made without one). Not while the task runs.
  template <class F>
  void set_function(F f) {
    using R = std::invoke_result_t<F&>;
    if constexpr (std::is_void_v<R>) {
      function_ = [f = std::move(f)]() mutable {
        f();
        return std::any();
      };
    } else {
      function_ = [f = std::move(f)]() mutable {
        return std::any(f());
      };
    }
  }

 private:
  friend struct detail::TaskRuntime;

  void add_callback(std::function<void(Task&)> callback);
  // require() for a task no other thread can reach yet (then()'s own): nothing can require it, so
  // no cycle can close through it, and its prerequisites are its own. Only `other` is shared: its
  // dependents are changed under its lock, not the process-wide graph mutex.
  void require_fresh(TaskPtr other);
  // Lists `dependent` and marks this task reachable_.
  void add_dependent(std::weak_ptr<Task> dependent);
  // Unlists `dependent` (a require() that found a cycle).
  void remove_dependent(const Task& dependent);
  // Throws CycleError if this task is reachable from `other` (call with the graph mutex held).
  void throw_if_reached_from(Task& other);
  void check_finished_ok() const;
  [[noreturn]] void throw_wrong_result_type(const std::any& got,
                                            const std::type_info& wanted) const;

  // Options most tasks never set, out of line so a plain task stays small.
  struct Extras {
    std::function<bool(const std::any&)> cancel_on_result;
    TaskTracker tracker;
  };
  Extras& extras();

  // The fields are laid out by cache line. Task::make puts a task in a 256-byte block aligned to
  // 64 (src/graph/task_blocks.hpp), after the 16-byte count of its shared_ptr, and with the 16
  // bytes of enable_shared_from_this first that leaves 48 here for the first line:
  // - line 0: what every state change reads (state, lock, options) and a graph walk's bookkeeping;
  // - line 1: what running a task touches (function, result, error);
  // - lines 2-3: the edges, which building and walking the graph touch, and the name.
  // make() prefetches lines 0 and 1 of a task about to run, and lines 0 and 2 of one about to be
  // walked.

  // ---- line 0 ----
  std::atomic<TaskState> state_{TaskState::pending};
  // state_ changes, result_, error_, callbacks_, dependents_, reachable_, prerequisites_ changes
  mutable detail::TaskSpinLock lock_;
  // Two bits of one byte, so that the flag after them fits in the same eight bytes as the state
  // and the index.
  bool print_transitions_ : 1 = false;
  bool cancel_on_exception_ : 1 = false;
  // Set (under lock_, never cleared) once a graph walk may read prerequisites_: the task is
  // someone's prerequisite, or a make() or to_dot() started from it. While it is false, no path
  // leads back to this task, so require() can close no cycle: it adds the edge under lock_ alone,
  // with no graph mutex and no cycle walk (src/graph/task.cpp has the argument). Read and written
  // only under lock_, so a plain bool (its own byte: the bits above change without lock_).
  bool reachable_ = false;
  std::uint32_t index_ = 0;  // graph walks: this task's position in the walk
  std::uint64_t mark_ = 0;   // graph walks: visited in walk number mark_
  std::unique_ptr<Extras> extras_;
  std::unique_ptr<std::vector<std::function<void(Task&)>>> callbacks_;  // lock_; most have none

  // ---- line 1 ----
  std::function<std::any()> function_;
  std::any result_;
  std::exception_ptr error_;
  [[maybe_unused]] std::uint64_t unused_ = 0;  // keeps prerequisites_ at the start of line 2

  // ---- lines 2-3 ----
  // Changed under lock_, and once reachable_ under the process-wide graph mutex too; graph walks
  // (which hold that mutex, as they do for index_ and mark_) read it without lock_.
  detail::SmallVector<TaskPtr, 2> prerequisites_;
  detail::SmallVector<std::weak_ptr<Task>, 2> dependents_;  // lock_
  std::string name_;
};

// `Task("t2", state=DONE)`
std::ostream& operator<<(std::ostream& out, const Task& task);

}  // namespace strand
