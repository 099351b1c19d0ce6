// What make(), TaskQueue and to_dot need from inside a Task (not installed; src/graph/ only).
#pragma once

#include <any>
#include <cstdint>
#include <exception>
#include <mutex>
#include <optional>
#include <string>

#include "strand/task.hpp"

namespace strand::detail {

struct TaskRuntime {
  // Held by every graph walk, and by require() once its task is reachable_ (see task.cpp): guards
  // every task's mark_ and index_, and orders the walks against the edges added meanwhile.
  static std::mutex& graph_mutex() noexcept;
  // Sets reachable_ on a task a walk starts from (call before reading its prerequisites_): any
  // require() on it from now on takes the graph mutex, so the walk reads a list no one changes.
  static void make_reachable(Task& task) noexcept;
  // A fresh number for a graph walk (call with graph_mutex held): a task is visited iff mark_ ==
  // it.
  static std::uint64_t next_mark() noexcept;

  // Applies `event` if the task is in state `from`; false (nothing changed) otherwise, or if the
  // state machine does not allow it. Finishing events store `result` and `error`.
  static bool apply_if(Task& task, TaskState from, TaskEvent event, std::any* result = nullptr,
                       std::exception_ptr error = nullptr);
  // A RUNNING task: calls its function and finishes it (done / fail / cancel). If the task was
  // cancelled meanwhile, the outcome is dropped.
  static void execute(Task& task) noexcept;
  // PENDING -> CANCELLED (culprit_state CANCELLED) or FAILED (otherwise) because of prerequisite
  // `culprit`, named in the reason; false if the task is not PENDING.
  static bool settle_from_prerequisite(Task& task, const Task& culprit, TaskState culprit_state);

  static SmallVector<TaskPtr, 2>& prerequisites(Task& task) noexcept { return task.prerequisites_; }
  // Where a graph walk reads a task's edges (for a prefetch: it need not be a live task).
  static const void* edges_address(const Task* task) noexcept { return &task->prerequisites_; }
  static std::uint64_t& mark(Task& task) noexcept { return task.mark_; }
  static std::uint32_t& index(Task& task) noexcept { return task.index_; }
};

}  // namespace strand::detail
