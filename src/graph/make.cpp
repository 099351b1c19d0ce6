#include "strand/make.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include "runtime.hpp"
#include "strand/detail/help.hpp"
#include "strand/promise.hpp"
#include "strand/task_group.hpp"

namespace strand {
namespace {

using Runtime = detail::TaskRuntime;
constexpr std::uint32_t kNone = std::numeric_limits<std::uint32_t>::max();

// One task as one make() sees it. The graph is copied into these (and one array of successor
// indices) when make() starts, so the run reads no task's edge lists and takes no graph lock.
struct Node {
  Task* task = nullptr;
  std::atomic<std::uint32_t> unfinished{0};        // prerequisites not yet finished
  std::atomic<std::uint32_t> failed_by{kNone};     // a prerequisite that FAILED
  std::atomic<std::uint32_t> cancelled_by{kNone};  // ... or was CANCELLED (or did not end DONE)
  std::uint32_t prerequisites = 0;                 // in this run: `unfinished` at the start
  std::uint32_t first_successor = 0;               // successors_[first_successor, end_successor)
  std::uint32_t end_successor = 0;
  bool counted = false;    // its prerequisites are counted in `unfinished` (it was PENDING)
  bool requested = false;  // yielded when it finishes
};

// The memory one make() works in: the walk's lists, the node array and the successor array, about
// 80 bytes a task. It is kept for the next make() instead of freed, because fresh memory costs a
// page fault per 4 KiB on first touch, and on this kind of machine (a VM) those faults were nine
// tenths of the walk: 36 ms of a 100,000-task walk that takes 2.6 ms in memory touched before.
struct Scratch {
  std::vector<Task*> order;
  std::vector<std::uint8_t> counted;
  std::vector<std::pair<Task*, std::uint32_t>> met;  // (prerequisite, dependent), in order met
  std::vector<std::pair<std::uint32_t, std::uint32_t>> edges;
  std::vector<std::uint32_t> offsets;
  std::vector<std::uint32_t> unfinished;
  std::unique_ptr<Node[]> nodes;  // Node holds atomics, so not a vector: grown by replacing
  std::uint32_t node_capacity = 0;
  std::vector<std::uint32_t> successors;

  // What this scratch holds, in bytes (roughly): the cache keeps small ones only.
  [[nodiscard]] std::size_t bytes() const noexcept {
    return order.capacity() * sizeof(Task*) + counted.capacity() + met.capacity() * sizeof(met[0]) +
           edges.capacity() * sizeof(edges[0]) +
           (offsets.capacity() + unfinished.capacity() + successors.capacity()) * 4 +
           std::size_t{node_capacity} * sizeof(Node);
  }
};

// A few Scratch kept between runs, process-wide (a make() may start on one thread and end on
// another). Two cover one graph made again and again plus one made beside it; 64 MiB each covers
// graphs of some 800,000 tasks, and a bigger one is freed as before rather than held forever.
class ScratchCache {
 public:
  static std::unique_ptr<Scratch> take() {
    {
      std::lock_guard lock(mutex());
      auto& kept = cached();
      if (!kept.empty()) {
        auto s = std::move(kept.back());
        kept.pop_back();
        return s;
      }
    }
    return std::make_unique<Scratch>();
  }

  static void give_back(std::unique_ptr<Scratch> s) noexcept {
    constexpr std::size_t kMaxKept = 2;
    constexpr std::size_t kMaxBytes = std::size_t{64} << 20;
    if (!s || s->bytes() > kMaxBytes) return;
    s->order.clear();
    s->counted.clear();
    s->met.clear();
    s->edges.clear();
    s->offsets.clear();
    s->unfinished.clear();
    s->successors.clear();
    std::lock_guard lock(mutex());
    auto& kept = cached();
    if (kept.size() >= kMaxKept) return;
    try {
      kept.push_back(std::move(s));
    } catch (...) {  // no memory to keep it: it is freed instead
    }
  }

 private:
  static std::mutex& mutex() {
    static std::mutex m;
    return m;
  }
  static std::vector<std::unique_ptr<Scratch>>& cached() {
    // Never destroyed: a make_later() thread may still give one back while the program exits.
    static auto& kept = *std::make_unique<std::vector<std::unique_ptr<Scratch>>>().release();
    return kept;
  }
};

class Run : public std::enable_shared_from_this<Run> {
 public:
  Run(std::vector<TaskPtr> requested, MakeOptions options)
      : requested_(std::move(requested)),
        pool_(options.executor),
        fail_fast_(options.fail_fast),
        scratch_(ScratchCache::take()) {
    collect();
    if (pool_ != nullptr) group_.emplace(*pool_);
  }
  Run(const Run&) = delete;
  Run& operator=(const Run&) = delete;
  ~Run() {
    group_.reset();  // its jobs use the scratch: they end first
    ScratchCache::give_back(std::move(scratch_));
  }

  [[nodiscard]] std::size_t requested_count() const noexcept { return requested_count_; }
  [[nodiscard]] Task& task(std::uint32_t i) const noexcept { return *nodes_[i].task; }
  [[nodiscard]] bool fail_fast() const noexcept { return fail_fast_; }

  // Runs the run's queued jobs on this thread too, until none is left or running.
  void help_run_jobs() noexcept {
    if (!group_) return;
    try {
      group_->wait();
    } catch (...) {
      report_error("strand::make: a graph job threw", std::current_exception());
    }
  }

  // Settles every task with no unfinished prerequisite (collect() listed them in sources_):
  // dispatches (pool) or readies it.
  void start() {
    if (pool_ == nullptr) {
      // The lowest index (the first task requested) on top.
      ready_.assign(sources_.rbegin(), sources_.rend());
      return;
    }
    // One job takes them all and splits the list in halves as it goes, each half a job of its
    // own: this thread posts once, instead of once per ready task while the workers take them
    // (1,000 posts took 0.2 to 2 ms on this VM).
    post_spread(0, static_cast<std::uint32_t>(sources_.size()));
  }

  // Without an executor: runs one ready task (or settles it without running) and returns true;
  // false when nothing is ready. With one: false.
  bool step() {
    if (ready_.empty()) return false;
    const std::uint32_t i = ready_.back();
    ready_.pop_back();
    std::uint32_t next = kNone;
    settle(i, /*may_run_inline=*/true, &next, ready_);
    if (next != kNone) {
      prefetch_successors(next);
      Runtime::execute(task(next));
      finished(next, ready_);
    }
    return true;
  }

  // Requested tasks that finished since the last call, in the order they finished.
  std::vector<std::uint32_t> take_finished() {
    std::lock_guard lock(mutex_);
    inbox_filled_.store(false, std::memory_order_relaxed);
    return std::exchange(inbox_, {});
  }

  // Waits until a requested task finished (see take_finished) or, without an executor, until a
  // task that runs elsewhere and that we waited for finished (its dependents may be ready now).
  // False when nothing can happen any more (no executor, nothing ready, no wait in flight).
  bool wait_for_progress() {
    if (pool_ != nullptr) {
      // On a pool worker (make() iterated inside a job), sleeping could leave no thread to run
      // the jobs: on a pool of one, none ever would. Such a thread helps run them instead, until
      // a requested task has finished. (Any other thread sleeps: the loop body may be what a task
      // waits for, and a thread that helped could be running that very task.)
      const InboxWait filled(*this);
      if (detail::help_until(filled, std::nullopt)) return true;
    }
    std::unique_lock lock(mutex_);
    for (;;) {
      if (!inbox_.empty()) return true;
      if (pool_ == nullptr) {
        if (!foreign_.empty()) {
          finish_foreign(lock);
          return true;
        }
        if (foreign_waits_.load(std::memory_order_acquire) == 0) return false;
      }
      changed_.wait(lock);
    }
  }

  // Nothing new starts; waits for the jobs and the waits on others' tasks still in flight.
  void stop_and_wait() noexcept {
    stopping_.store(true, std::memory_order_relaxed);
    wait_for_all();
  }

  // Waits until nothing of the run is in flight (every job, every wait on others' tasks), helping
  // the pool run the jobs meanwhile.
  void wait_for_all() noexcept {
    help_run_jobs();  // the jobs first: most of a run is on the pool
    for (;;) {
      {
        std::unique_lock lock(mutex_);
        for (;;) {
          if (pool_ == nullptr && !foreign_.empty()) finish_foreign(lock);
          if (foreign_waits_.load(std::memory_order_acquire) == 0) break;
          changed_.wait(lock);
        }
      }
      if (!group_) return;
      help_run_jobs();  // those the others' finished tasks made ready
      if (foreign_waits_.load(std::memory_order_acquire) == 0) return;
    }
  }

 private:
  // Walks the graph from the requested tasks, under the graph lock, in one pass: each task gets
  // an index when first seen and each edge is written down then, as (prerequisite, dependent), so
  // no task is read twice. Successor lists are then built from that flat list (a counting sort).
  //
  // The walk is breadth-first with the prerequisites it meets looked at a few steps later, after
  // a prefetch: on a wide graph many tasks' cache misses overlap instead of waiting one by one
  // (the walk was half of make()'s time on 100,000 tasks before).
  void collect() {
    std::lock_guard lock(Runtime::graph_mutex());
    const auto mark = Runtime::next_mark();
    auto& order = scratch_->order;
    auto& counted = scratch_->counted;
    auto& met = scratch_->met;
    auto& edges = scratch_->edges;
    const auto visit = [&](Task* t) {
      if (Runtime::mark(*t) == mark) return Runtime::index(*t);
      if (order.size() >= kNone - 1) throw std::length_error("strand::make: too many tasks");
      const auto i = static_cast<std::uint32_t>(order.size());
      Runtime::mark(*t) = mark;
      Runtime::index(*t) = i;
      order.push_back(t);
      counted.push_back(0);
      return i;
    };
    for (const auto& t : requested_) {
      if (!t) throw std::invalid_argument("strand::make: a task is null");
      Runtime::make_reachable(*t);  // its prerequisites_ change only under the mutex from now on
      visit(t.get());
    }
    constexpr std::size_t kLookahead = 16;
    constexpr std::uintptr_t kStrideAhead = 16;
    std::size_t expanded = 0;  // order[0, expanded) had their prerequisites met
    std::size_t resolved = 0;  // met[0, resolved) are edges already
    const auto resolve_one = [&] {
      const auto [p, dependent] = met[resolved++];
      edges.emplace_back(visit(p), dependent);
    };
    for (;;) {
      if (expanded < order.size()) {
        const auto i = static_cast<std::uint32_t>(expanded++);
        Task& t = *order[i];
        if (t.state() == TaskState::pending) {  // finished or someone else's: no need to look
          counted[i] = 1;
          const auto& prerequisites = Runtime::prerequisites(t);
          for (std::size_t k = 0; k < prerequisites.size(); ++k) {
            Task* p = prerequisites[k].get();
            __builtin_prefetch(p);  // its state and mark
            __builtin_prefetch(Runtime::edges_address(p));
            met.emplace_back(p, i);
          }
          // On a chain the lookahead has nothing to look at: each task is found only by reading
          // the one before, a cache miss each. But tasks made one after another tend to lie in
          // memory at a steady stride, so the task kStrideAhead steps down the chain is probably
          // that many strides away: ask for it now. A wrong guess costs one wasted prefetch (it
          // never faults); a right one took a 100,000-task chain's run from 5.4 to 4.9 ms.
          if (prerequisites.size() == 1) {
            const auto here = reinterpret_cast<std::uintptr_t>(&t);
            const auto there = reinterpret_cast<std::uintptr_t>(prerequisites[0].get());
            const auto guess = there + (there - here) * kStrideAhead;
            const auto* task = reinterpret_cast<const Task*>(guess);
            __builtin_prefetch(task);
            __builtin_prefetch(Runtime::edges_address(task));
          }
        }
        if (met.size() - resolved > kLookahead) resolve_one();
      } else if (resolved < met.size()) {
        resolve_one();
      } else {
        break;
      }
    }
    size_ = static_cast<std::uint32_t>(order.size());
    if (scratch_->node_capacity < size_) {
      scratch_->nodes.reset();  // before the new one: both at once could be twice the memory
      scratch_->node_capacity = 0;
      scratch_->nodes = std::make_unique<Node[]>(size_);
      scratch_->node_capacity = size_;
    }
    nodes_ = scratch_->nodes.get();
    auto& offsets = scratch_->offsets;
    auto& unfinished = scratch_->unfinished;
    offsets.assign(size_ + 1, 0);
    unfinished.assign(size_, 0);
    for (const auto& [from, to] : edges) {
      ++offsets[from + 1];
      ++unfinished[to];
    }
    for (std::uint32_t i = 0; i < size_; ++i) offsets[i + 1] += offsets[i];
    for (std::uint32_t i = 0; i < size_; ++i) {
      Node& node = nodes_[i];
      node.task = order[i];
      node.counted = counted[i] != 0;
      node.requested = false;
      node.prerequisites = unfinished[i];
      node.unfinished.store(unfinished[i], std::memory_order_relaxed);
      node.failed_by.store(kNone, std::memory_order_relaxed);
      node.cancelled_by.store(kNone, std::memory_order_relaxed);
      node.first_successor = node.end_successor = offsets[i];
      if (unfinished[i] == 0) sources_.push_back(i);  // start() settles these first
    }
    auto& successors = scratch_->successors;
    successors.resize(edges.size());
    for (const auto& [from, to] : edges) successors[nodes_[from].end_successor++] = to;
    successors_ = successors.data();
    for (const auto& t : requested_) {
      Node& node = nodes_[Runtime::index(*t)];
      if (!node.requested) ++requested_count_;
      node.requested = true;
    }
  }

  // Node i has no unfinished prerequisite: finish it from its prerequisites, wait for whoever runs
  // it, or claim it. A claimed task runs here next (*next, if may_run_inline and *next is free),
  // in the ready list (no executor) or on the pool. Ready successors go to `work`.
  void settle(std::uint32_t i, bool may_run_inline, std::uint32_t* next,
              std::vector<std::uint32_t>& work) {
    Node& node = nodes_[i];
    Task& t = *node.task;
    for (;;) {
      const TaskState state = t.state();
      if (is_finished(state)) {
        finished(i, work);
        return;
      }
      if (state != TaskState::pending) {  // queued or running elsewhere: wait for it
        foreign_waits_.fetch_add(1, std::memory_order_relaxed);
        t.notify([self = shared_from_this(), i](Task&) { self->foreign_finished(i); });
        return;
      }
      // Stopping (fail_fast, or the loop was left): whatever has not been settled stays PENDING.
      if (stopping_.load(std::memory_order_relaxed)) return;
      const Task* culprit = nullptr;
      TaskState culprit_state = TaskState::failed;
      if (auto f = node.failed_by.load(std::memory_order_relaxed); f != kNone) {
        culprit = &task(f);
      } else if (auto c = node.cancelled_by.load(std::memory_order_relaxed); c != kNone) {
        culprit = &task(c);
        culprit_state = TaskState::cancelled;
      } else if (!node.counted) {
        culprit = first_not_done(t, culprit_state);
      }
      if (culprit != nullptr) {
        if (Runtime::settle_from_prerequisite(t, *culprit, culprit_state)) {
          finished(i, work);
          return;
        }
        continue;  // its state changed under us
      }
      if (may_run_inline && *next == kNone) {
        if (Runtime::apply_if(t, TaskState::pending, TaskEvent::dispatch)) {
          *next = i;
          return;
        }
        continue;
      }
      if (pool_ == nullptr) {
        work.push_back(i);  // the ready list: claimed when its turn comes
        return;
      }
      if (Runtime::apply_if(t, TaskState::pending, TaskEvent::queue)) {
        post(i, work);
        return;
      }
    }
  }

  // A node that was not PENDING when make() started but is now (retried meanwhile): its
  // prerequisites were never counted, so any that is not DONE fails it (cs.taskqueue's last rule).
  static const Task* first_not_done(Task& t, TaskState& state) {
    std::lock_guard lock(Runtime::graph_mutex());
    const auto& prerequisites = Runtime::prerequisites(t);
    for (std::size_t k = 0; k < prerequisites.size(); ++k) {
      state = prerequisites[k]->state();
      if (state != TaskState::done) return prerequisites[k].get();
    }
    return nullptr;
  }

  void post(std::uint32_t i, std::vector<std::uint32_t>& work) {
    try {
      group_->run([this, i] { job(i); });  // the group's wait keeps this Run alive meanwhile
    } catch (...) {                        // the pool is shut down: the task fails with that reason
      Runtime::apply_if(task(i), TaskState::queued, TaskEvent::fail, nullptr,
                        std::current_exception());
      finished(i, work);
    }
  }

  // A pool job: runs node i, then whatever that makes ready, one task inline at a time; the rest
  // goes to the pool.
  void job(std::uint32_t i) {
    auto& work = thread_work();
    std::uint32_t next = kNone;
    if (Runtime::apply_if(task(i), TaskState::queued, TaskEvent::dispatch)) {
      next = i;
    } else {
      settle(i, true, &next, work);  // cancelled while queued, most likely
      drain(work, true, &next);
    }
    run_inline(next, work);
  }

  // A pool job for sources_[begin, end): posts the upper half as a job until one source is left,
  // then settles that one here (running it, and what it makes ready, inline).
  void spread(std::uint32_t begin, std::uint32_t end) {
    while (end - begin > 1) {
      const std::uint32_t middle = begin + (end - begin) / 2;
      post_spread(middle, end);
      end = middle;
    }
    if (begin == end) return;
    auto& work = thread_work();
    std::uint32_t next = kNone;
    settle(sources_[begin], true, &next, work);
    drain(work, true, &next);
    run_inline(next, work);
  }

  void post_spread(std::uint32_t begin, std::uint32_t end) {
    try {
      group_->run([this, begin, end] { spread(begin, end); });
    } catch (...) {  // the pool is shut down: each fails as its own post does (see post)
      std::vector<std::uint32_t> work(sources_.begin() + begin, sources_.begin() + end);
      drain(work, /*may_run_inline=*/false, nullptr);
    }
  }

  // Runs `next` (claimed, RUNNING), then whatever that makes ready, one task at a time.
  void run_inline(std::uint32_t next, std::vector<std::uint32_t>& work) {
    while (next != kNone) {
      const std::uint32_t current = std::exchange(next, kNone);
      prefetch_successors(current);
      Runtime::execute(task(current));
      finished(current, work);
      drain(work, true, &next);
    }
  }

  // Where a pool thread lists the successors a task made ready (empty between jobs).
  static std::vector<std::uint32_t>& thread_work() {
    static thread_local std::vector<std::uint32_t> work;
    return work;
  }

  // The successors' tasks are touched right after this one finishes: start loading them now, so
  // their cache misses overlap this task's run instead of following it.
  void prefetch_successors(std::uint32_t i) const noexcept {
    const Node& node = nodes_[i];
    for (std::uint32_t k = node.first_successor; k < node.end_successor; ++k) {
      const Task* t = nodes_[successors_[k]].task;
      // For writing: its lock and state are taken next, then its function runs and its result is
      // stored.
      __builtin_prefetch(t, 1);
      __builtin_prefetch(reinterpret_cast<const char*>(t) + 64, 1);
    }
  }

  void drain(std::vector<std::uint32_t>& work, bool may_run_inline, std::uint32_t* next) {
    std::uint32_t unused = kNone;
    if (next == nullptr) next = &unused;
    while (!work.empty()) {
      const std::uint32_t s = work.back();
      work.pop_back();
      settle(s, may_run_inline, next, work);
    }
  }

  // Node i has finished (in any way): yield it if requested, and count it off its successors.
  void finished(std::uint32_t i, std::vector<std::uint32_t>& work) {
    Node& node = nodes_[i];
    const TaskState state = node.task->state();
    if (node.requested) {
      if (fail_fast_ && state != TaskState::done) stopping_.store(true, std::memory_order_relaxed);
      bool first = false;
      {
        std::lock_guard lock(mutex_);
        first = inbox_.empty();
        inbox_.push_back(i);
        inbox_filled_.store(true, std::memory_order_seq_cst);
      }
      // The iterating thread empties the whole inbox when it wakes, and it sleeps only on an empty
      // one: a wake per batch, not per task (1,000 requested tasks were 1,000 futex wakes).
      if (first) changed_.notify_all();
      // A worker that iterates helps instead, and may sleep as a helper: the flag and this load
      // are both seq_cst, so either it saw the inbox filled or this sees it armed.
      if (helper_armed_.load(std::memory_order_seq_cst) &&
          helper_armed_.exchange(false, std::memory_order_seq_cst)) {
        detail::notify_helpers();
      }
    }
    for (std::uint32_t k = node.first_successor; k < node.end_successor; ++k) {
      Node& successor = nodes_[successors_[k]];
      if (state != TaskState::done) {
        auto& culprit = state == TaskState::failed ? successor.failed_by : successor.cancelled_by;
        std::uint32_t none = kNone;
        culprit.compare_exchange_strong(none, i, std::memory_order_relaxed);
      }
      // A task with one prerequisite here is ready when that one finishes, which happens once,
      // on this thread: no locked instruction (on a chain it was most of the run's time, waiting
      // for the finished task's stores to drain). Otherwise acq_rel: whoever takes the count to
      // zero sees every culprit the others wrote.
      if (successor.prerequisites == 1 ||
          successor.unfinished.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        work.push_back(successors_[k]);
      }
    }
  }

  // What an iterating pool worker waits for while it helps: a requested task finished.
  class InboxWait final : public detail::HelpWaitable {
   public:
    explicit InboxWait(const Run& run) : run_(run) {}
    [[nodiscard]] bool is_done() const noexcept override {
      return run_.inbox_filled_.load(std::memory_order_seq_cst);
    }
    bool arm_helper_wake() const noexcept override {
      run_.helper_armed_.store(true, std::memory_order_seq_cst);
      return !is_done();
    }

   private:
    const Run& run_;
  };

  // Another make(), bg() or run() finished node i's task, on its thread.
  void foreign_finished(std::uint32_t i) {
    if (pool_ == nullptr) {  // the iterating thread finishes it (wait_for_progress)
      {
        std::lock_guard lock(mutex_);
        foreign_.push_back(i);
      }
      changed_.notify_all();
      return;
    }
    std::vector<std::uint32_t> work;
    finished(i, work);
    drain(work, false, nullptr);
    std::lock_guard lock(mutex_);  // so a waiter between its check and its sleep hears this
    foreign_waits_.fetch_sub(1, std::memory_order_acq_rel);
    changed_.notify_all();
  }

  // No executor: finishes, on the iterating thread, the others' tasks that finished.
  void finish_foreign(std::unique_lock<std::mutex>& lock) {
    auto foreign = std::exchange(foreign_, {});
    lock.unlock();
    for (std::uint32_t i : foreign) finished(i, ready_);
    foreign_waits_.fetch_sub(static_cast<std::uint32_t>(foreign.size()), std::memory_order_acq_rel);
    lock.lock();
  }

  std::vector<TaskPtr> requested_;  // keep the graph alive
  ThreadPool* pool_;
  bool fail_fast_;
  std::unique_ptr<Scratch> scratch_;  // what the two below point into
  std::uint32_t size_ = 0;
  Node* nodes_ = nullptr;
  const std::uint32_t* successors_ = nullptr;
  std::size_t requested_count_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<std::uint32_t> foreign_waits_{0};  // notify()s on others' tasks not yet called

  std::vector<std::uint32_t> ready_;    // no executor: settled-ready, not yet claimed
  std::vector<std::uint32_t> sources_;  // no prerequisite in the run: settled first

  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::uint32_t> inbox_;               // requested nodes that finished
  std::atomic<bool> inbox_filled_{false};          // !inbox_.empty(), for a helping worker to poll
  mutable std::atomic<bool> helper_armed_{false};  // it may sleep: wake it on a fill
  std::vector<std::uint32_t> foreign_;             // no executor: others' tasks that finished

  // Last, so it is destroyed first: its destructor waits for jobs that use everything above.
  std::optional<TaskGroup> group_;
};

// Leaving the loop (at the end, early, or by fail_fast) waits for the run's jobs.
struct StopOnExit {
  Run& run;
  ~StopOnExit() { run.stop_and_wait(); }
};

}  // namespace

Generator<TaskPtr> make(std::vector<TaskPtr> tasks, MakeOptions options) {
  auto run = std::make_shared<Run>(std::move(tasks), options);
  StopOnExit stop_on_exit{*run};
  run->start();
  std::size_t yielded = 0;
  while (yielded < run->requested_count()) {
    std::vector<std::uint32_t> finished = run->take_finished();
    if (finished.empty()) {
      if (run->step()) continue;             // no executor: ran (or settled) one ready task
      if (!run->wait_for_progress()) break;  // nothing running, nothing ready: fail_fast
      continue;
    }
    for (std::uint32_t i : finished) {
      const TaskPtr task = run->task(i).shared_from_this();
      ++yielded;
      co_yield task;
      if (run->fail_fast() && task->state() != TaskState::done) co_return;
    }
  }
}

std::vector<TaskPtr> make_now(std::vector<TaskPtr> tasks, MakeOptions options) {
  std::vector<TaskPtr> done;
  if (options.executor != nullptr) {
    // No loop body runs between the yields here, so this thread can help the pool run the graph
    // until the run has ended (as TaskGroup::wait does), then read the finished tasks in the
    // order they finished, instead of sleeping until a job wakes it for each batch of them. On 2
    // cores a layered graph of 100,000 tasks ran in 16 ms the one way and 9 ms this way (a chain
    // of 100,000: 7 and 5.6 ms).
    auto run = std::make_shared<Run>(std::move(tasks), options);
    run->start();
    run->wait_for_all();
    for (std::uint32_t i : run->take_finished()) {
      done.push_back(run->task(i).shared_from_this());
      if (run->fail_fast() && done.back()->state() != TaskState::done) break;
    }
    return done;
  }
  for (const TaskPtr& task : make(std::move(tasks), options)) done.push_back(task);
  return done;
}

Handle<std::vector<TaskPtr>> make_later(std::vector<TaskPtr> tasks, MakeOptions options) {
  Promise<std::vector<TaskPtr>> promise(Status::running);
  auto handle = promise.handle();
  std::thread([tasks = std::move(tasks), options, promise = std::move(promise)]() mutable {
    try {
      promise.set_value(make_now(std::move(tasks), options));
    } catch (...) {
      promise.set_exception(std::current_exception());
    }
  }).detach();  // the handle is the join
  return handle;
}

// ---- TaskQueue ----

TaskQueue::TaskQueue(std::vector<TaskPtr> tasks, bool run_dependent_tasks)
    : run_dependent_tasks_(run_dependent_tasks) {
  for (auto& task : tasks) add(std::move(task));
}

void TaskQueue::add(TaskPtr task) {
  if (!task) throw std::invalid_argument("strand::TaskQueue: a task is null");
  for (const auto& queued : tasks_) {
    if (queued == task) return;
  }
  tasks_.push_back(std::move(task));
}

Generator<TaskPtr> TaskQueue::run() {
  std::unordered_set<Task*> queued;
  std::deque<TaskPtr> candidates;
  for (const auto& task : tasks_) {
    queued.insert(task.get());
    candidates.push_back(task);
  }
  while (!candidates.empty()) {
    TaskPtr task = std::move(candidates.front());
    candidates.pop_front();
    if (task->state() != TaskState::pending) continue;
    const Task* culprit = nullptr;
    TaskState culprit_state = TaskState::done;
    bool blocked = false;
    const auto prerequisites = task->prerequisites();
    for (const auto& p : prerequisites) {
      const auto state = p->state();
      if (!is_finished(state)) {
        blocked = true;  // runs once that prerequisite finishes in this queue, if it is in it
        break;
      }
      // A failed prerequisite decides over a cancelled one (make()'s order of rules).
      if (state == TaskState::failed && culprit_state != TaskState::failed) {
        culprit = p.get();
        culprit_state = state;
      } else if (state == TaskState::cancelled && culprit == nullptr) {
        culprit = p.get();
        culprit_state = state;
      }
    }
    if (blocked) continue;
    if (culprit != nullptr) {
      if (!Runtime::settle_from_prerequisite(*task, *culprit, culprit_state)) continue;
    } else {
      if (!Runtime::apply_if(*task, TaskState::pending, TaskEvent::dispatch)) continue;
      Runtime::execute(*task);
    }
    co_yield task;
    for (auto& dependent : task->dependents()) {
      if (queued.contains(dependent.get())) {
        candidates.push_back(std::move(dependent));
      } else if (run_dependent_tasks_ && task->state() == TaskState::done) {
        queued.insert(dependent.get());
        tasks_.push_back(dependent);
        candidates.push_back(std::move(dependent));
      }
    }
  }
}

}  // namespace strand
