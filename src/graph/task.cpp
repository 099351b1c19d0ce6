#include "strand/task.hpp"

#include <cxxabi.h>

#include <algorithm>
#include <array>
#include <iostream>
#include <mutex>
#include <ostream>
#include <thread>
#include <unordered_map>

#include "../core/cpu_relax.hpp"
#include "runtime.hpp"
#include "strand/promise.hpp"
#include "task_blocks.hpp"

namespace strand {
namespace {

std::string quoted_name(std::string_view name) {
  // Built by appends: GCC 12's -Wrestrict misfires on "\"" + std::string(name) at -O3.
  std::string out;
  out.reserve(name.size() + 2);
  out += '"';
  out += name;
  out += '"';
  return out;
}

std::string demangled(const std::type_info& type) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> out(
      abi::__cxa_demangle(type.name(), nullptr, nullptr, &status), std::free);
  return status == 0 && out ? std::string(out.get()) : std::string(type.name());
}

std::string join_cycle(const std::vector<std::string>& cycle) {
  std::string text;
  for (const auto& name : cycle) text += (text.empty() ? "" : " -> ") + name;
  return text;
}

std::exception_ptr cancellation(const Task& task, const std::string& reason) {
  return std::make_exception_ptr(
      Cancelled("strand: task " + quoted_name(task.name()) + " was cancelled: " + reason));
}

// The tracked transitions of all tasks print through one lock, so lines never interleave.
std::mutex& print_mutex() {
  static std::mutex mutex;
  return mutex;
}

using Runtime = detail::TaskRuntime;

}  // namespace

std::string_view to_string(TaskState state) noexcept {
  static constexpr std::array<std::string_view, 6> kNames{"PENDING", "QUEUED", "RUNNING",
                                                          "DONE",    "FAILED", "CANCELLED"};
  const auto i = static_cast<std::size_t>(state);
  return i < kNames.size() ? kNames[i] : "UNKNOWN";
}

std::string_view to_string(TaskEvent event) noexcept {
  static constexpr std::array<std::string_view, 6> kNames{"queue", "dispatch", "done",
                                                          "fail",  "cancel",   "retry"};
  const auto i = static_cast<std::size_t>(event);
  return i < kNames.size() ? kNames[i] : "unknown";
}

std::ostream& operator<<(std::ostream& out, TaskState state) {
  return out << to_string(state);
}
std::ostream& operator<<(std::ostream& out, TaskEvent event) {
  return out << to_string(event);
}

std::optional<TaskState> next_state(TaskState state, TaskEvent event) noexcept {
  using S = TaskState;
  const bool unfinished = state == S::pending || state == S::queued || state == S::running;
  switch (event) {
    case TaskEvent::queue:
      if (state == S::pending) return S::queued;
      break;
    case TaskEvent::dispatch:
      if (state == S::pending || state == S::queued) return S::running;
      break;
    case TaskEvent::done:
      if (state == S::running) return S::done;
      break;
    case TaskEvent::fail:
      if (unfinished) return S::failed;
      break;
    case TaskEvent::cancel:
      if (unfinished) return S::cancelled;
      break;
    case TaskEvent::retry:
      if (state == S::failed || state == S::cancelled) return S::pending;
      break;
  }
  return std::nullopt;
}

TaskError::TaskError(std::string_view task, TaskState state, TaskEvent event)
    : Error("strand: task " + quoted_name(task) + ": event " + std::string(to_string(event)) +
            " is not allowed in state " + std::string(to_string(state))) {}

BlockedError::BlockedError(std::string_view task, std::string_view prerequisite, TaskState state)
    : TaskError("strand: task " + quoted_name(task) + " is blocked: prerequisite " +
                quoted_name(prerequisite) + " is " + std::string(to_string(state))) {}

CycleError::CycleError(std::vector<std::string> cycle)
    : TaskError("strand: task " + quoted_name(cycle.empty() ? "" : cycle.front()) +
                " cannot require " + quoted_name(cycle.size() > 1 ? cycle[1] : "") +
                ": that would make a cycle " + join_cycle(cycle)),
      cycle_(std::move(cycle)) {}

void detail::TaskSpinLock::wait_and_lock() noexcept {
  int spins = 0;  // counted per look, so a holder that was descheduled gets the core soon
  do {
    while (locked_.load(std::memory_order_relaxed)) {
      if (++spins < 64) {
        cpu_relax();
      } else {
        std::this_thread::yield();  // the holder was descheduled: let it run
      }
    }
  } while (locked_.exchange(true, std::memory_order_acquire));
}

// ---- the runtime's access ----

std::mutex& detail::TaskRuntime::graph_mutex() noexcept {
  static std::mutex mutex;
  return mutex;
}

std::uint64_t detail::TaskRuntime::next_mark() noexcept {
  static std::uint64_t mark = 0;  // guarded by graph_mutex
  return ++mark;
}

// The one place a state changes. Takes the task's lock only to check and store; the tracker and
// the callbacks run after it is released.
bool detail::TaskRuntime::apply_if(Task& task, TaskState from, TaskEvent event, std::any* result,
                                   std::exception_ptr error) {
  TaskState seen{};
  std::optional<TaskState> to;
  std::vector<std::function<void(Task&)>> callbacks;
  {
    std::lock_guard lock(task.lock_);
    seen = task.state_.load(std::memory_order_relaxed);
    if (seen != from) return false;
    to = next_state(seen, event);
    if (!to) return false;
    if (is_finished(*to)) {
      if (result != nullptr) task.result_ = std::move(*result);
      task.error_ = std::move(error);
      if (task.callbacks_) callbacks.swap(*task.callbacks_);
    } else if (event == TaskEvent::retry) {
      task.result_.reset();
      task.error_ = nullptr;
    }
    task.state_.store(*to, std::memory_order_release);
  }
  if (task.print_transitions_) {
    std::lock_guard lock(print_mutex());
    std::cout << task.name_ << ' ' << seen << "->" << event << "->" << *to << '\n';
  }
  if (task.extras_ && task.extras_->tracker) {
    try {
      task.extras_->tracker(task, seen, event, *to);
    } catch (...) {
      report_error("strand: a task tracker threw", std::current_exception());
    }
  }
  for (auto& callback : callbacks) {
    try {
      callback(task);
    } catch (...) {
      report_error("strand: a task's notify callback threw", std::current_exception());
    }
  }
  return true;
}

void detail::TaskRuntime::execute(Task& task) noexcept {
  std::any value;
  std::exception_ptr error;
  try {
    if (task.function_) value = task.function_();
  } catch (...) {
    error = std::current_exception();
  }
  TaskEvent event = TaskEvent::done;
  if (error) {
    if (task.cancel_on_exception_) {
      event = TaskEvent::cancel;
      error = cancellation(task, "its function threw " + describe(error));
    } else {
      event = TaskEvent::fail;
    }
  } else if (task.extras_ && task.extras_->cancel_on_result) {
    try {
      if (task.extras_->cancel_on_result(value)) {
        event = TaskEvent::cancel;
        error = cancellation(task, "cancel_on_result returned true");
      }
    } catch (...) {
      event = TaskEvent::fail;
      error = std::current_exception();
    }
  }
  // False if the task was cancelled while it ran: its outcome is dropped.
  apply_if(task, TaskState::running, event, &value, std::move(error));
}

bool detail::TaskRuntime::settle_from_prerequisite(Task& task, const Task& culprit,
                                                   TaskState culprit_state) {
  if (culprit_state == TaskState::cancelled) {
    return apply_if(
        task, TaskState::pending, TaskEvent::cancel, nullptr,
        cancellation(task, "prerequisite " + quoted_name(culprit.name()) + " was cancelled"));
  }
  std::string reason = "prerequisite " + quoted_name(culprit.name());
  if (culprit_state == TaskState::failed) {
    const auto error = culprit.exception();
    reason += " failed" + (error ? ": " + describe(error) : std::string());
  } else {
    reason += " is " + std::string(to_string(culprit_state));
  }
  return apply_if(task, TaskState::pending, TaskEvent::fail, nullptr,
                  std::make_exception_ptr(TaskError("strand: task " + quoted_name(task.name()) +
                                                    " failed: " + reason)));
}

// ---- Task ----

Task::Task(Private, std::string name, TaskOptions options)
    : print_transitions_(options.track),
      cancel_on_exception_(options.cancel_on_exception),
      name_(std::move(name)) {}

Task::Extras& Task::extras() {
  if (!extras_) extras_ = std::make_unique<Extras>();
  return *extras_;
}

// Task's fields are laid out for a 256-byte block with libstdc++'s 16-byte count before it.
static_assert(sizeof(Task) + 16 <= detail::TaskBlocks::kBlockSize,
              "strand::Task outgrew its block: see the layout notes in task.hpp");

TaskPtr Task::make(std::string name, TaskOptions options) {
  return std::allocate_shared<Task>(detail::TaskBlockAllocator<Task>(), Private{}, std::move(name),
                                    options);
}

Task::~Task() {
  // A task owns its prerequisites; letting a long chain destroy itself would recurse once per
  // link. The outermost destructor on this thread collects the prerequisites that die with it and
  // releases them in a loop instead.
  static thread_local std::vector<TaskPtr>* releasing = nullptr;
  if (prerequisites_.empty()) return;
  if (releasing != nullptr) {
    for (std::size_t i = 0; i < prerequisites_.size(); ++i) {
      releasing->push_back(std::move(prerequisites_[i]));
    }
    return;
  }
  std::vector<TaskPtr> pending = prerequisites_.take();
  releasing = &pending;
  while (!pending.empty()) {
    TaskPtr last = std::move(pending.back());
    pending.pop_back();
    last.reset();  // may append that task's own prerequisites to `pending`
  }
  releasing = nullptr;
}

// require() without the graph mutex, and why no cycle can slip through:
// - Every require() first marks `other` reachable_ (under other's lock_), then looks at this
//   task's flag under this task's lock_ and, while it is still false, adds the edge in that same
//   critical section. Such a "fast" edge closes no cycle: a cycle through it would need an edge
//   into this task, and the require() adding that one would have marked this task first.
// - A task found reachable takes the slow path: the graph mutex, a walk from `other` looking for
//   this task, then the edge (under the mutex and lock_).
// - Suppose a cycle formed anyway, and take the slow edge pushed last (all-fast cycles are
//   impossible: each fast push precedes the mark of its task, which precedes the push of the edge
//   into it, around the cycle and back to itself). Every other edge of the cycle was pushed before
//   that walk: the slow ones under the mutex before it, the fast ones before the first mark of
//   their task, which precedes the push of the edge into it, and so on back to a slow edge, or to
//   the walk's own mark of its start. So the walk saw the whole path back and threw.
// - Graph walks (make(), to_dot(), this one) hold the mutex and read prerequisites_ without locks:
//   a task they reach is reachable_, so no fast push can change it under them, and the chain of
//   locks above orders its earlier fast pushes before their read.
Task& Task::require(TaskPtr other) {
  if (!other) throw std::invalid_argument("strand: task \"" + name_ + "\" cannot require null");
  if (other.get() == this) throw CycleError({name_, name_});
  Task& prerequisite = *other;
  prerequisite.add_dependent(weak_from_this());  // marks it reachable_: before the look below
  {
    std::lock_guard lock(lock_);
    if (!reachable_) {
      prerequisites_.push_back(std::move(other));
      return *this;
    }
  }
  const TaskPtr keep = other;  // `prerequisite` outlives a push that throws (rare path: a copy)
  try {
    std::lock_guard graph(Runtime::graph_mutex());
    throw_if_reached_from(prerequisite);
    std::lock_guard lock(lock_);
    prerequisites_.push_back(std::move(other));
  } catch (...) {
    prerequisite.remove_dependent(*this);
    throw;
  }
  return *this;
}

void Task::throw_if_reached_from(Task& other) {
  const auto mark = Runtime::next_mark();
  std::unordered_map<Task*, Task*> reached_from;  // for naming the cycle
  std::vector<Task*> stack{&other};
  other.mark_ = mark;
  while (!stack.empty()) {
    Task* t = stack.back();
    stack.pop_back();
    if (t == this) {
      std::vector<std::string> cycle{name_};
      std::vector<std::string> path;
      for (Task* at = this; at != &other; at = reached_from.at(at)) path.push_back(at->name_);
      path.push_back(other.name_);
      cycle.insert(cycle.end(), path.rbegin(), path.rend());
      throw CycleError(std::move(cycle));
    }
    for (std::size_t i = 0; i < t->prerequisites_.size(); ++i) {
      const TaskPtr& p = t->prerequisites_[i];
      if (p->mark_ == mark) continue;
      p->mark_ = mark;
      reached_from[p.get()] = t;
      stack.push_back(p.get());
    }
  }
}

void Task::require_fresh(TaskPtr other) {
  Task& prerequisite = *other;
  prerequisites_.push_back(std::move(other));
  prerequisite.add_dependent(weak_from_this());
}

void Task::add_dependent(std::weak_ptr<Task> dependent) {
  std::lock_guard lock(lock_);
  // Forget dependents that are gone, so a long-lived prerequisite's list does not only grow.
  const auto n = dependents_.size();
  if (n >= 8 && (n & (n - 1)) == 0) {  // at sizes 8, 16, 32...: amortised O(1)
    dependents_.erase_if([](const std::weak_ptr<Task>& d) { return d.expired(); });
  }
  dependents_.push_back(std::move(dependent));
  reachable_ = true;
}

void Task::remove_dependent(const Task& dependent) {
  std::lock_guard lock(lock_);
  const auto gone = dependent.weak_from_this();
  const auto same = [&](const std::weak_ptr<Task>& d) {
    return !d.owner_before(gone) && !gone.owner_before(d);
  };
  for (std::size_t i = dependents_.size(); i-- > 0;) {
    if (same(dependents_[i])) {  // the last one listed: the require() that just added it
      auto all = dependents_.take();
      all.erase(all.begin() + static_cast<std::ptrdiff_t>(i));
      for (auto& d : all) dependents_.push_back(std::move(d));
      return;
    }
  }
}

void detail::TaskRuntime::make_reachable(Task& task) noexcept {
  std::lock_guard lock(task.lock_);
  task.reachable_ = true;
}

std::vector<TaskPtr> Task::prerequisites() const {
  std::lock_guard lock(lock_);  // every change to prerequisites_ holds it
  return prerequisites_.to_vector();
}

std::vector<TaskPtr> Task::dependents() const {
  std::lock_guard lock(lock_);
  std::vector<TaskPtr> alive;
  for (std::size_t i = 0; i < dependents_.size(); ++i) {
    if (auto t = dependents_[i].lock()) alive.push_back(std::move(t));
  }
  return alive;
}

namespace {

// Throws BlockedError if a prerequisite is not DONE, then PENDING -> RUNNING (or TaskError).
void claim_for_run(Task& task) {
  for (const TaskPtr& p : task.prerequisites()) {
    const auto state = p->state();
    if (state != TaskState::done) throw BlockedError(task.name(), p->name(), state);
  }
  if (!Runtime::apply_if(task, TaskState::pending, TaskEvent::dispatch)) {
    throw TaskError(task.name(), task.state(), TaskEvent::dispatch);
  }
}

}  // namespace

void Task::run() {
  claim_for_run(*this);
  Runtime::execute(*this);
}

Handle<void> Task::bg() {
  claim_for_run(*this);
  Promise<void> promise(Status::running);
  auto handle = promise.handle();
  std::thread([self = shared_from_this(), promise = std::move(promise)]() mutable {
    Runtime::execute(*self);
    switch (self->state()) {
      case TaskState::done:
        promise.set_value();
        break;
      case TaskState::cancelled:
        promise.handle().cancel();
        break;
      default:
        promise.set_exception(self->exception());
    }
  }).detach();  // the handle is the join: the thread owns everything it touches
  return handle;
}

void Task::add_callback(std::function<void(Task&)> callback) {
  {
    std::lock_guard lock(lock_);
    if (!is_finished(state_.load(std::memory_order_relaxed))) {
      if (!callbacks_) callbacks_ = std::make_unique<std::vector<std::function<void(Task&)>>>();
      callbacks_->push_back(std::move(callback));
      return;
    }
  }
  try {
    callback(*this);
  } catch (...) {
    report_error("strand: a task's notify callback threw", std::current_exception());
  }
}

TaskState Task::transition(TaskEvent event) {
  for (;;) {
    const auto from = state();
    const auto to = next_state(from, event);
    if (!to) throw TaskError(name_, from, event);
    std::exception_ptr error;
    if (*to == TaskState::failed) {
      error = std::make_exception_ptr(
          TaskError("strand: task " + quoted_name(name_) + " failed: the fail event was applied"));
    } else if (*to == TaskState::cancelled) {
      error = cancellation(*this, "the cancel event was applied");
    }
    if (Runtime::apply_if(*this, from, event, nullptr, std::move(error))) return *to;
    // The state changed under us: decide again from the new one.
  }
}

bool Task::cancel() {
  for (;;) {
    const auto from = state();
    if (is_finished(from)) return false;
    if (Runtime::apply_if(*this, from, TaskEvent::cancel, nullptr,
                          cancellation(*this, "cancel() was called"))) {
      return true;
    }
  }
}

void Task::retry() {
  for (;;) {
    const auto from = state();
    if (!next_state(from, TaskEvent::retry)) throw TaskError(name_, from, TaskEvent::retry);
    if (Runtime::apply_if(*this, from, TaskEvent::retry)) return;
  }
}

std::exception_ptr Task::exception() const {
  std::lock_guard lock(lock_);
  return error_;
}

void Task::check_finished_ok() const {
  const auto state = this->state();
  if (state == TaskState::done) return;
  if (state == TaskState::failed || state == TaskState::cancelled) {
    std::rethrow_exception(exception());
  }
  throw NotReady("strand: task " + quoted_name(name_) + " has no result yet: it is " +
                 std::string(to_string(state)));
}

void Task::throw_wrong_result_type(const std::any& got, const std::type_info& wanted) const {
  throw TaskError("strand: task " + quoted_name(name_) + ": the result is " +
                  (got.has_value() ? demangled(got.type()) : std::string("void")) + ", not " +
                  demangled(wanted));
}

Task& Task::track(bool on) {
  print_transitions_ = on;
  return *this;
}

Task& Task::track(TaskTracker tracker) {
  extras().tracker = std::move(tracker);
  return *this;
}

std::ostream& operator<<(std::ostream& out, const Task& task) {
  return out << "Task(\"" << task.name() << "\", state=" << task.state() << ")";
}

}  // namespace strand
