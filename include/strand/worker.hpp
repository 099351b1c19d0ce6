// strand/worker.hpp — runs the jobs of a store's queue with the functions of a Registry.
//
//   strand::Registry registry;
//   registry.add("resize", resize);
//   strand::Worker worker(strand::open_store("redis://10.0.0.5:6379/0"), registry,
//                         {.concurrency = 4, .queues = {"images"}});
//   worker.run_until_signal();   // SIGTERM or SIGINT: stop claiming, finish or release, return
//
// A worker claims jobs in batches (one transaction or round trip for several), runs each on one of
// `concurrency` threads of its own (or, with Isolation::process, in a forked child per job, which a
// crash or a cancel cannot take the worker down with), and records the result or the failure
// through the job queue, where the job's fencing token decides whether it still may. Results of
// jobs that finish together are recorded together (JobQueue::complete_many: one transaction or
// round trip), by one thread while the others go on to their next job. A heartbeat
// thread, which no job code runs on, extends the leases of running jobs; it also learns there that
// a job was cancelled or its lease lost (its stop token is then requested, or its child killed) and
// enforces each job's timeout.
//
// stop() is graceful: no new claims; running jobs get `shutdown_grace` to finish; the rest are
// stopped and released (queued again at once, not counted as failures), so another worker takes
// them without waiting for their leases to run out.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "strand/job_queue.hpp"
#include "strand/registry.hpp"
#include "strand/store.hpp"

namespace strand {

enum class Isolation {
  thread,   // on the worker's threads: fastest; a crash takes the worker down (the jobs it held
            // are claimed again once their leases run out)
  process,  // a forked child per job: a crash fails only that attempt; cancel kills the child
};

struct WorkerOptions {
  std::size_t concurrency = 1;  // jobs at once
  std::vector<std::string> queues{"default"};
  Isolation isolation = Isolation::thread;
  // How long a claim holds a job without a heartbeat. Heartbeats come every lease / 3.
  std::chrono::milliseconds lease{std::chrono::seconds(30)};
  // How long stop() lets running jobs finish before it stops and releases them.
  std::chrono::milliseconds shutdown_grace{std::chrono::seconds(10)};
  // Jobs claimed ahead, beyond those running, so that a free thread finds its next job without a
  // round trip (-1: as many as `concurrency`). They hold leases (kept by heartbeats) while they
  // wait; a graceful stop releases them at once. Claims go out once at least half of them can be
  // claimed, so with a store a round trip away a larger prefetch means fewer round trips per job.
  int prefetch = -1;
  // The name written into each job's history; default "<host>:<pid>:<n>".
  std::string name{};
};

class Worker {
 public:
  struct Stats {
    std::uint64_t completed = 0;  // results recorded
    std::uint64_t failed = 0;     // failed attempts recorded (retried or not)
    std::uint64_t released = 0;   // given back at shutdown
    std::uint64_t fenced = 0;     // results refused: the job was cancelled or claimed again
  };

  // Starts claiming at once. NoJobQueue if the store has no job queue; std::invalid_argument for
  // a concurrency of 0, no queues, or a lease under 30 ms.
  Worker(std::shared_ptr<Store> store, Registry registry, WorkerOptions options = {});
  // stop(), then joins every thread.
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Graceful shutdown (see the top of this file); returns once every thread has ended. Safe to
  // call more than once and from any thread but the worker's own.
  void stop();
  // Waits for SIGTERM or SIGINT (its handlers are installed for the wait and restored after), then
  // stop(). Returns the signal's number.
  int run_until_signal();

  [[nodiscard]] const std::string& name() const noexcept;
  [[nodiscard]] Stats stats() const;
  [[nodiscard]] std::size_t running() const;  // jobs running now

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace strand
