// strand/job_queue.hpp — durable jobs: a call by name, kept in a store, claimed and run by workers.
//
//   auto queue = strand::job_queue(strand::open_store("sqlite:///var/lib/app/jobs.db"));
//   std::string id = queue->enqueue({.function = "resize", .args = {"a.png", 640},
//                                    .options = {.priority = 5, .max_retries = 3}});
//   // in a worker (strand::Worker does all of this):
//   for (strand::Lease& lease : queue->claim({"default"}, "worker-1", 30s, 8)) {
//     ... run lease.record.job->function with lease.record.job->args ...
//     queue->complete(lease.id, lease.token, result);   // false: the lease was lost, result
//     dropped
//   }
//
// A job is a Record (its id is the record's key) whose `job` member says what to call and how:
// ComputationHandle<T>(id, store) waits for it and reads its result like any computation.
//
// The life of a job:
//
//   enqueue ──> QUEUED ──claim──> RUNNING ──complete──> COMPLETED
//                 ^  ^               │ │ └──fail, retries left──> QUEUED (run_at = now + backoff)
//                 │  └──release──────┘ └────fail, none left─────> FAILED (history kept)
//                 └── lease expired (worker died): claimable again, as if queued
//   cancel: QUEUED or RUNNING ──> CANCELLED (a running job's worker learns it at its next
//   heartbeat)
//
// Every change is a compare-and-set on the job's status and its lease token. Each claim gives the
// job a new token (the count of its claims), a fencing token: once a lease has expired and another
// worker has claimed the job, the first worker's complete/fail/heartbeat/release find another token
// and change nothing. Execution is therefore at least once (a job whose worker died runs again) and
// its result is recorded once. Lease expiry and run_at are read on the store's clock (`now()`:
// Redis TIME, SQLite's own time; the filesystem and memory stores, which one machine shares, read
// the system clock), never a worker's.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "strand/serialize.hpp"
#include "strand/store.hpp"

namespace strand {

struct JobOptions {
  std::string queue = "default";
  // When the job may first run: `start_at` if given, else now + `delay` (on the store's clock).
  std::chrono::milliseconds delay{0};
  std::optional<Record::time_point> start_at{};
  // Higher runs first among ready jobs; equal priorities run in run_at order.
  int priority = 0;
  // Failed attempts retried after the first (0: one attempt). A retry waits
  // retry_backoff * 2^(failures-1), times a random factor in [0.5, 1.5) (jitter).
  int max_retries = 0;
  std::chrono::milliseconds retry_backoff{500};
  // How long one attempt may run before it is stopped and counted as failed (strand::Timeout).
  std::optional<std::chrono::milliseconds> timeout{};
  // A second enqueue with the same key writes nothing and returns the first job's id. It must be a
  // valid store key (see validate_key); the job's id is then "idem-" + key.
  std::string idempotency_key{};
  // Copied to the record's metadata.
  nlohmann::json metadata = nlohmann::json::object();
};

struct JobRequest {
  std::string function;                           // a name registered with the worker's Registry
  nlohmann::json args = nlohmann::json::array();  // one document per argument, in order
  JobOptions options{};
};

// One claimed job: run it, then complete/fail/release it with this token.
struct Lease {
  std::string id;
  std::uint64_t token = 0;
  Record record;  // as claimed: status running, record.job set
  Record::time_point expires{};
};

// What a heartbeat learns.
enum class LeaseState {
  held,       // the lease is extended
  cancelled,  // the job was cancelled: stop it (nothing it records will be kept)
  lost,       // another claim, or the job finished or vanished: stop, nothing will be kept
};
[[nodiscard]] std::string_view to_string(LeaseState state) noexcept;

// A store without a job queue (strand's own stores all have one; a Store of yours may not).
class NoJobQueue : public StoreError {
 public:
  using StoreError::StoreError;
};

class JobQueue {
 public:
  using clock = std::chrono::steady_clock;

  virtual ~JobQueue() = default;

  // The store's clock (see the top of this file).
  [[nodiscard]] virtual Record::time_point now() = 0;

  // Writes the job QUEUED and returns its id. InvalidKey for a bad idempotency key; a job with an
  // empty function name is a std::invalid_argument.
  std::string enqueue(const JobRequest& request);
  // Many jobs in one transaction (or one pipelined round trip); their ids in order.
  virtual std::vector<std::string> enqueue_many(std::span<const JobRequest> requests) = 0;

  // Claims up to `max` claimable jobs of `queues` (queued and due, or running with an expired
  // lease), highest priority first, then earliest run_at; each gets a new token and a lease until
  // now() + `lease`. Empty when nothing is claimable.
  virtual std::vector<Lease> claim(std::span<const std::string> queues, std::string_view worker,
                                   std::chrono::milliseconds lease, std::size_t max = 1) = 0;
  // Extends the lease to now() + `lease` if the job is still running under `token`.
  virtual LeaseState heartbeat(std::string_view id, std::uint64_t token,
                               std::chrono::milliseconds lease) = 0;
  // Records the result (COMPLETED) if the job is still running under `token`; false otherwise,
  // and nothing is written.
  virtual bool complete(std::string_view id, std::uint64_t token, const nlohmann::json& value) = 0;
  // One result for complete_many.
  struct Completion {
    std::string_view id;
    std::uint64_t token = 0;
    const nlohmann::json* value = nullptr;  // not null
  };
  // complete() for each of `completions`, in one transaction or round trip where the store can
  // (SQLite, Redis); for each, whether it was recorded. A worker whose jobs finish together
  // records them with this (group commit): one write lock or one round trip instead of many.
  virtual std::vector<bool> complete_many(std::span<const Completion> completions);
  // Records a failed attempt if the job is running under `token`: QUEUED again after the backoff
  // while retries are left (and `retryable`), else FAILED with `error`. False if fenced off.
  virtual bool fail(std::string_view id, std::uint64_t token, const ErrorInfo& error,
                    bool retryable = true) = 0;
  // Gives the job back, QUEUED and due at once, without counting a failure (a worker shutting
  // down). False if fenced off.
  virtual bool release(std::string_view id, std::uint64_t token) = 0;
  // QUEUED or RUNNING -> CANCELLED; true if it was. A queued job never runs; a running one's worker
  // learns it at its next heartbeat.
  virtual bool cancel_job(std::string_view id) = 0;

  // Returns once a job may be claimable in `queues`, `deadline` passes, or `stop` is requested:
  // by the store's notification where it has one, else polling with back-off (1 ms growing to
  // 50 ms). May return early; callers claim and wait again.
  virtual void wait_for_jobs(std::span<const std::string> queues, clock::time_point deadline,
                             std::stop_token stop) = 0;
};

// The job queue of `store` (it is the same object); NoJobQueue naming the store's URL if it has
// none.
[[nodiscard]] std::shared_ptr<JobQueue> job_queue(const std::shared_ptr<Store>& store);

}  // namespace strand
