// strand/make.hpp — make, make_now, make_later and TaskQueue: running a graph of Tasks.
//
//   auto t1 = strand::Task::make("t1", [] { std::puts("doing t1"); });
//   auto t2 = t1->then("t2", [] { std::puts("doing t2"); });
//   for (const strand::TaskPtr& done : strand::make({t2})) { /* t2, once t1 and t2 ran */ }
//   strand::make_now({t2}, {.fail_fast = true, .executor = &pool});   // the list, in parallel
//   strand::Handle<std::vector<strand::TaskPtr>> h = strand::make_later({t2});
//
// make() follows cs.taskqueue's rules for every requested task and, first, its prerequisites:
// - a task that is QUEUED or RUNNING (in another make, bg(), by hand) is waited for;
// - a PENDING task waits until all its prerequisites have finished, then:
//   * if one FAILED, the task fails (TaskError: `... failed: prerequisite "t1" FAILED`);
//   * else if one was CANCELLED, the task is cancelled;
//   * else it is dispatched;
// - a task that has finished already (DONE, FAILED, CANCELLED) is not run again: retry() first;
// - with fail_fast, make stops at the first requested task that ends other than DONE: nothing new
//   starts, what is running is waited for, and tasks not started stay PENDING.
// Each requested task is yielded once, as it finishes: in completion order.
//
// Without an executor the tasks run one at a time in the thread that iterates. With one (a
// ThreadPool), independent ready tasks run in parallel on it: each task has an atomic count of
// unfinished prerequisites, and whoever finishes the last one releases it to the pool (or runs it
// itself next, which keeps a chain on one warm thread with no queue in between).
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "strand/generator.hpp"
#include "strand/handle.hpp"
#include "strand/task.hpp"
#include "strand/thread_pool.hpp"

namespace strand {

struct MakeOptions {
  bool fail_fast = false;
  ThreadPool* executor = nullptr;  // null: in the iterating thread, one task at a time
};

// A range yielding each requested task (duplicates once) as it finishes. Nothing runs until the
// iteration starts; leaving the loop early stops dispatching and waits for what is running. A
// thread outside the pool sleeps between yields; a pool worker helps run the pool's jobs.
[[nodiscard]] Generator<TaskPtr> make(std::vector<TaskPtr> tasks, MakeOptions options = {});

// make() run to the end: the finished tasks in completion order. With an executor the calling
// thread helps run the graph's jobs meanwhile (as TaskGroup::wait does), so tasks run on it too.
std::vector<TaskPtr> make_now(std::vector<TaskPtr> tasks, MakeOptions options = {});

// make_now() on a thread of its own; the handle gives the list.
[[nodiscard]] Handle<std::vector<TaskPtr>> make_later(std::vector<TaskPtr> tasks,
                                                      MakeOptions options = {});

// A set of tasks run by a dispatching loop: run() runs, in the calling thread, each queued task
// that is PENDING once its prerequisites have finished (applying make()'s fail and cancel rules),
// and yields it. Unlike make(), it never runs a prerequisite that is not in the queue: a task
// whose prerequisite stays PENDING outside the queue is left alone. With run_dependent_tasks, the
// dependents of each task that finishes DONE join the queue.
class TaskQueue {
 public:
  explicit TaskQueue(std::vector<TaskPtr> tasks = {}, bool run_dependent_tasks = false);

  // Queues another task (a task already queued is ignored).
  void add(TaskPtr task);
  [[nodiscard]] std::size_t size() const noexcept { return tasks_.size(); }

  // Yields each task as it finishes; ends when no queued task can make progress.
  [[nodiscard]] Generator<TaskPtr> run();

 private:
  std::vector<TaskPtr> tasks_;
  bool run_dependent_tasks_;
};

}  // namespace strand
