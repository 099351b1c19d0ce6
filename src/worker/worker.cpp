#include "strand/worker.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <thread>

#include "strand/computation.hpp"
#include "strand/handle.hpp"
#include "strand/runner.hpp"

namespace strand {
namespace {

using steady = std::chrono::steady_clock;

std::string default_name() {
  static std::atomic<int> count{0};
  char host[256] = "localhost";
  (void)::gethostname(host, sizeof host - 1);
  return std::string(host) + ":" + std::to_string(::getpid()) + ":" + std::to_string(++count);
}

// Why a job's attempt ended early, as decided outside its executor.
enum class Verdict {
  none,       // still running as claimed
  cancelled,  // the job was cancelled: record nothing
  lost,       // the lease was lost (claimed again, finished elsewhere): record nothing
  timed_out,  // its timeout passed: the failure is already recorded
  released,   // shutdown released it: record nothing
};

// One claimed job, from its claim to its end.
struct Running {
  explicit Running(Lease l) : lease(std::move(l)) {}

  Lease lease;
  std::stop_source stop;
  steady::time_point renewed = steady::now();  // when its lease was last extended
  std::optional<steady::time_point> started;   // set when an executor takes it
  Verdict verdict = Verdict::none;             // guarded by the worker's mutex
  bool finished = false;  // guarded by the worker's mutex: ran to its end, its result to record
  std::optional<Handle<nlohmann::json>> child;  // the child process, with Isolation::process
};

// The self-pipe run_until_signal waits on: the handler writes the signal's number into it.
std::atomic<int> signal_pipe_write{-1};

extern "C" void on_termination_signal(int signo) {
  const int fd = signal_pipe_write.load();
  if (fd >= 0) {
    const auto byte = static_cast<unsigned char>(signo);
    const int saved = errno;
    (void)!::write(fd, &byte, 1);
    errno = saved;
  }
}

}  // namespace

struct Worker::Impl {
  std::shared_ptr<Store> store;
  std::shared_ptr<JobQueue> queue;
  Registry registry;
  WorkerOptions options;
  std::string name;
  std::chrono::milliseconds heartbeat_period{};

  mutable std::mutex mutex;
  std::condition_variable work_ready;   // executors: a job to run, or closing
  std::condition_variable slot_free;    // the claimer and stop(): a job ended
  std::condition_variable beat_change;  // the heartbeat thread: a new job, or closing
  std::deque<std::shared_ptr<Running>> ready;
  std::map<std::string, std::shared_ptr<Running>, std::less<>> held;  // claimed, by id
  bool stopping = false;                                              // no more claims
  bool closing = false;                                               // executors and heartbeat end
  bool stopped = false;
  Stats stats;
  std::stop_source claim_stop;  // wakes the claimer out of wait_for_jobs

  // Group commit of results: an executor whose job completed queues its result here; one executor
  // at a time records what is queued with one complete_many (one transaction or round trip), while
  // the others go on to their next job. A job stays held (its lease renewed) until recorded.
  struct Finished {
    std::shared_ptr<Running> job;
    nlohmann::json result;
  };
  std::vector<Finished> to_record;  // guarded by mutex
  bool recording = false;           // guarded by mutex: an executor is recording to_record

  std::thread claimer;
  std::thread heartbeat;
  std::vector<std::thread> executors;

  void claim_loop();
  void execute_loop();
  void heartbeat_loop();
  // Runs the job; true if its result was queued in to_record (it stays held until recorded).
  bool execute(const std::shared_ptr<Running>& job);
  void record(Running& job, const nlohmann::json* result, const std::optional<ErrorInfo>& error,
              bool retryable);
  // Records to_record (and what is queued meanwhile) unless another executor is recording it.
  void record_finished();
  // Marks `job` as ended early for `why` (if it is still running as claimed) and stops it.
  bool end_early(Running& job, Verdict why);
  // Releases a job this worker will not finish back to the queue (not a failure).
  void give_back(const Running& job);
  void shutdown();
};

Worker::Worker(std::shared_ptr<Store> store, Registry registry, WorkerOptions options)
    : impl_(std::make_unique<Impl>()) {
  if (options.concurrency == 0) throw std::invalid_argument("strand: a worker's concurrency is 0");
  if (options.queues.empty()) throw std::invalid_argument("strand: a worker needs a queue");
  if (options.lease < std::chrono::milliseconds(30)) {
    throw std::invalid_argument("strand: a worker's lease must be at least 30 ms");
  }
  impl_->queue = job_queue(store);  // NoJobQueue
  impl_->store = std::move(store);
  impl_->registry = std::move(registry);
  impl_->options = std::move(options);
  impl_->name = impl_->options.name.empty() ? default_name() : impl_->options.name;
  impl_->heartbeat_period = impl_->options.lease / 3;
  Impl& impl = *impl_;
  for (std::size_t i = 0; i < impl.options.concurrency; ++i) {
    impl.executors.emplace_back([&impl] { impl.execute_loop(); });
  }
  impl.heartbeat = std::thread([&impl] { impl.heartbeat_loop(); });
  impl.claimer = std::thread([&impl] { impl.claim_loop(); });
}

Worker::~Worker() {
  stop();
}

void Worker::stop() {
  impl_->shutdown();
}

const std::string& Worker::name() const noexcept {
  return impl_->name;
}

Worker::Stats Worker::stats() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->stats;
}

std::size_t Worker::running() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->held.size() - impl_->ready.size();
}

int Worker::run_until_signal() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe");
  signal_pipe_write.store(fds[1]);
  struct sigaction action {};
  action.sa_handler = on_termination_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  struct sigaction old_term {};
  struct sigaction old_int {};
  ::sigaction(SIGTERM, &action, &old_term);
  ::sigaction(SIGINT, &action, &old_int);
  // The signals are blocked in this thread, so one of the worker's own threads (which wait in
  // condition variables) runs the handler and this thread only reads the pipe. (Were the handler
  // to run here, a sanitizer that defers handlers until the thread leaves its current call would
  // never run it: this thread's read does not return before the handler writes.)
  sigset_t termination;
  sigemptyset(&termination);
  sigaddset(&termination, SIGTERM);
  sigaddset(&termination, SIGINT);
  sigset_t old_mask;
  ::pthread_sigmask(SIG_BLOCK, &termination, &old_mask);
  unsigned char signo = 0;
  while (::read(fds[0], &signo, 1) < 0 && errno == EINTR) {
  }
  ::sigaction(SIGTERM, &old_term, nullptr);
  ::sigaction(SIGINT, &old_int, nullptr);
  ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  signal_pipe_write.store(-1);
  ::close(fds[0]);
  ::close(fds[1]);
  stop();
  return signo;
}

void Worker::Impl::claim_loop() {
  const std::size_t ahead =
      options.prefetch < 0 ? options.concurrency : static_cast<std::size_t>(options.prefetch);
  const std::size_t limit = options.concurrency + ahead;
  // Claims go out in batches of at least half the jobs claimed ahead: one round trip claims
  // several. Until then every thread still has a job (more are held than run at once).
  const std::size_t batch = std::max<std::size_t>(1, ahead / 2);
  auto backoff = std::chrono::milliseconds(10);  // after a store error
  for (;;) {
    std::size_t free = 0;
    {
      std::unique_lock lock(mutex);
      slot_free.wait(lock, [&] { return stopping || held.size() + batch <= limit; });
      if (stopping) return;
      free = limit - held.size();
    }
    std::vector<Lease> leases;
    try {
      leases = queue->claim(options.queues, name, options.lease, free);
      backoff = std::chrono::milliseconds(10);
    } catch (const std::exception&) {
      // The store is unreachable for now (it retries connections itself): wait, then try again.
      std::unique_lock lock(mutex);
      slot_free.wait_for(lock, backoff, [&] { return stopping; });
      backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
      continue;
    }
    if (leases.empty()) {
      try {
        queue->wait_for_jobs(options.queues, steady::now() + std::chrono::seconds(2),
                             claim_stop.get_token());
      } catch (const std::exception&) {
        std::unique_lock lock(mutex);
        slot_free.wait_for(lock, backoff, [&] { return stopping; });
      }
      continue;
    }
    {
      std::lock_guard lock(mutex);
      for (Lease& lease : leases) {
        auto job = std::make_shared<Running>(std::move(lease));
        held.emplace(job->lease.id, job);
        ready.push_back(std::move(job));
      }
    }
    // The heartbeat thread needs no word: it wakes within a heartbeat period anyway, and a new
    // lease is first due a whole period after its claim.
    work_ready.notify_all();
  }
}

void Worker::Impl::execute_loop() {
  for (;;) {
    std::shared_ptr<Running> job;
    {
      std::unique_lock lock(mutex);
      work_ready.wait(lock, [&] { return closing || !ready.empty(); });
      if (ready.empty()) return;
      job = std::move(ready.front());
      ready.pop_front();
      job->started = steady::now();
    }
    if (job->lease.record.job->timeout) beat_change.notify_one();  // its timeout starts now
    if (execute(job)) {
      record_finished();
      continue;
    }
    {
      std::lock_guard lock(mutex);
      held.erase(job->lease.id);
    }
    slot_free.notify_all();
  }
}

void Worker::Impl::record_finished() {
  std::unique_lock lock(mutex);
  if (recording) return;  // the executor recording now takes ours too
  recording = true;
  while (!to_record.empty()) {
    std::vector<Finished> batch;
    batch.swap(to_record);
    // Cancelled or lost meanwhile (a released job is never queued here): nothing to record.
    std::erase_if(batch, [&](const Finished& f) {
      if (f.job->verdict == Verdict::none) return false;
      ++stats.fenced;
      held.erase(f.job->lease.id);
      return true;
    });
    lock.unlock();
    std::vector<JobQueue::Completion> completions;
    completions.reserve(batch.size());
    for (const Finished& f : batch) {
      completions.push_back({f.job->lease.id, f.job->lease.token, &f.result});
    }
    std::vector<bool> recorded;
    try {
      if (!completions.empty()) recorded = queue->complete_many(completions);
    } catch (const std::exception&) {
      // The store failed for good: the leases will run out and the jobs run again (at least once).
    }
    recorded.resize(batch.size(), false);
    lock.lock();
    for (std::size_t i = 0; i < batch.size(); ++i) {
      ++(recorded[i] ? stats.completed : stats.fenced);
      held.erase(batch[i].job->lease.id);
    }
    lock.unlock();
    slot_free.notify_all();
    lock.lock();
  }
  recording = false;
}

bool Worker::Impl::execute(const std::shared_ptr<Running>& running) {
  Running& job = *running;
  const Job& spec = *job.lease.record.job;
  nlohmann::json result;
  std::optional<ErrorInfo> error;
  bool retryable = true;
  try {
    // report_progress writes here, while this lease holds the job.
    const detail::ComputationScope scope(*store, job.lease.id, job.lease.token);
    if (options.isolation == Isolation::thread) {
      result = registry.call(spec.function, spec.args, job.stop.get_token());
    } else {
      registry.check(spec.function, spec.args);  // a bad job fails here, without a child
      const Registry* functions = &registry;     // the child has its own copy of the memory
      auto runner = ProcessTaskrunner([functions](std::string function, nlohmann::json args) {
        return functions->call(function, args);
      });
      Handle<nlohmann::json> child = runner(spec.function, spec.args);
      bool stop_now = false;
      {
        std::lock_guard lock(mutex);
        job.child = child;
        stop_now = job.verdict != Verdict::none;
      }
      if (stop_now) child.cancel();
      result = child.get();
    }
  } catch (const UnknownFunction&) {
    error = error_info(std::current_exception());
    retryable = false;
  } catch (const BadArguments&) {
    error = error_info(std::current_exception());
    retryable = false;
  } catch (...) {
    error = error_info(std::current_exception());
  }
  if (!error) {
    std::lock_guard lock(mutex);
    if (job.verdict == Verdict::none) {
      job.finished = true;  // its timeout no longer applies
      to_record.push_back({running, std::move(result)});
      return true;
    }
  }
  record(job, error ? nullptr : &result, error, retryable);
  return false;
}

void Worker::Impl::record(Running& job, const nlohmann::json* result,
                          const std::optional<ErrorInfo>& error, bool retryable) {
  {
    std::lock_guard lock(mutex);
    if (job.verdict != Verdict::none) {
      // Cancelled, lost, timed out (its failure is recorded) or released: nothing to record.
      if (job.verdict == Verdict::cancelled || job.verdict == Verdict::lost) ++stats.fenced;
      return;
    }
  }
  bool recorded = false;
  try {
    recorded = result != nullptr ? queue->complete(job.lease.id, job.lease.token, *result)
                                 : queue->fail(job.lease.id, job.lease.token, *error, retryable);
  } catch (const std::exception&) {
    // The store failed for good: the lease will run out and the job run again (at least once).
  }
  std::lock_guard lock(mutex);
  if (!recorded) {
    ++stats.fenced;
  } else if (result != nullptr) {
    ++stats.completed;
  } else {
    ++stats.failed;
  }
}

bool Worker::Impl::end_early(Running& job, Verdict why) {
  std::optional<Handle<nlohmann::json>> child;
  {
    std::lock_guard lock(mutex);
    if (job.verdict != Verdict::none) return false;
    job.verdict = why;
    child = job.child;
  }
  job.stop.request_stop();
  if (child) child->cancel();
  return true;
}

void Worker::Impl::heartbeat_loop() {
  std::unique_lock lock(mutex);
  while (!closing) {
    // The next thing to do: a lease to extend, or a timeout to enforce.
    const auto now = steady::now();
    auto next = now + heartbeat_period;
    std::vector<std::shared_ptr<Running>> renew;
    std::vector<std::shared_ptr<Running>> expired;
    for (auto& [id, job] : held) {
      if (job->verdict != Verdict::none) continue;
      const auto renew_at = job->renewed + heartbeat_period;
      if (renew_at <= now) {
        renew.push_back(job);
      } else {
        next = std::min(next, renew_at);
      }
      const auto& timeout = job->lease.record.job->timeout;
      if (timeout && job->started && !job->finished) {
        const auto due = *job->started + *timeout;
        if (due <= now) {
          expired.push_back(job);
        } else {
          next = std::min(next, due);
        }
      }
    }
    if (renew.empty() && expired.empty()) {
      beat_change.wait_until(lock, next);
      continue;
    }
    lock.unlock();
    for (auto& job : expired) {
      if (!end_early(*job, Verdict::timed_out)) continue;
      const Job& spec = *job->lease.record.job;
      const ErrorInfo timeout{"strand::Timeout", "strand: job \"" + spec.function +
                                                     "\" timed out after " +
                                                     std::to_string(spec.timeout->count()) + " ms"};
      bool recorded = false;
      try {
        recorded = queue->fail(job->lease.id, job->lease.token, timeout);
      } catch (const std::exception&) {
      }
      std::lock_guard relock(mutex);
      ++(recorded ? stats.failed : stats.fenced);
    }
    for (auto& job : renew) {
      LeaseState state = LeaseState::held;
      try {
        state = queue->heartbeat(job->lease.id, job->lease.token, options.lease);
      } catch (const std::exception&) {
        continue;  // the store is away for now: try again next period
      }
      if (state == LeaseState::held) {
        std::lock_guard relock(mutex);
        job->renewed = steady::now();
      } else {
        end_early(*job, state == LeaseState::cancelled ? Verdict::cancelled : Verdict::lost);
      }
    }
    lock.lock();
  }
}

void Worker::Impl::give_back(const Running& job) {
  try {
    if (queue->release(job.lease.id, job.lease.token)) {
      std::lock_guard lock(mutex);
      ++stats.released;
    }
  } catch (const std::exception&) {
    // The store is out of reach: the lease runs out and the job is claimed again.
  }
}

void Worker::Impl::shutdown() {
  std::unique_lock lock(mutex);
  if (stopped) return;
  stopped = true;
  stopping = true;
  lock.unlock();
  claim_stop.request_stop();
  slot_free.notify_all();
  if (claimer.joinable()) claimer.join();

  // Claimed but not started: give back at once.
  lock.lock();
  std::vector<std::shared_ptr<Running>> unstarted(ready.begin(), ready.end());
  ready.clear();
  for (auto& job : unstarted) {
    job->verdict = Verdict::released;
    held.erase(job->lease.id);
  }
  lock.unlock();
  for (auto& job : unstarted) give_back(*job);

  // Running: a grace period to finish, then stopped and released.
  lock.lock();
  slot_free.wait_until(lock, steady::now() + options.shutdown_grace, [&] { return held.empty(); });
  std::vector<std::shared_ptr<Running>> late;
  for (auto& [id, job] : held) {
    if (!job->finished) late.push_back(job);  // a finished one is being recorded: let it be
  }
  lock.unlock();
  for (auto& job : late) {
    if (end_early(*job, Verdict::released)) give_back(*job);
  }

  lock.lock();
  closing = true;
  lock.unlock();
  work_ready.notify_all();
  beat_change.notify_all();
  for (auto& t : executors) {
    if (t.joinable()) t.join();  // a thread job that ignores its stop token is waited for
  }
  if (heartbeat.joinable()) heartbeat.join();
}

}  // namespace strand
