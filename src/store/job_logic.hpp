// What every store's job queue shares: the state changes of a job as pure functions of its record
// and the store's time, and a job queue built on nothing but Store::update (for stores whose update
// is already an atomic read-modify-write: memory, filesystem). A store with a query language
// (SQLite, Redis) finds claimable jobs with it and still applies these functions, or mirrors them
// exactly.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "strand/job_queue.hpp"
#include "strand/store.hpp"

namespace strand::detail {

using time_point = Record::time_point;

// The id a request's job gets: "idem-" + its idempotency key (checked), or a new key of `store`.
[[nodiscard]] std::string job_id(Store& store, const JobRequest& request);
// The QUEUED record of a new job. std::invalid_argument for an empty function name.
[[nodiscard]] Record new_job_record(std::string id, const JobRequest& request, time_point now);

// Queued and due, or running with an expired lease.
[[nodiscard]] bool is_claimable(const Record& record, time_point now) noexcept;
// When the next of `records` in `queues` becomes claimable: `now` or earlier if one is claimable
// already, nullopt if none ever will by itself (only an enqueue or a release can make one).
[[nodiscard]] std::optional<time_point> next_due(const std::vector<Record>& records,
                                                 std::span<const std::string> queues,
                                                 time_point now);
// Claim order: true if `a` goes before `b` (higher priority, then earlier run_at, then key).
[[nodiscard]] bool claims_before(const Record& a, const Record& b) noexcept;

// Each of these changes `record` only if the change is allowed, and says whether it was.
void claim_job(Record& record, std::string_view worker, time_point now,
               std::chrono::milliseconds lease);
[[nodiscard]] LeaseState heartbeat_job(Record& record, std::uint64_t token, time_point now,
                                       std::chrono::milliseconds lease);
[[nodiscard]] bool complete_job(Record& record, std::uint64_t token, const nlohmann::json& value,
                                time_point now);
[[nodiscard]] bool fail_job(Record& record, std::uint64_t token, const ErrorInfo& error,
                            bool retryable, time_point now);
[[nodiscard]] bool release_job(Record& record, std::uint64_t token, time_point now);
[[nodiscard]] bool cancel_job(Record& record, time_point now);

// The delay before retry number `failures` (1 for the first retry): backoff * 2^(failures-1) times
// a random factor in [0.5, 1.5), capped at one hour.
[[nodiscard]] std::chrono::milliseconds retry_delay(std::chrono::milliseconds backoff,
                                                    int failures);

// The jobs a store object claimed and still holds, as it last wrote them. complete, fail and
// release start from them instead of reading and decoding the record again; their compare-and-set
// on the version still guards the write, and one that finds the record changed (cancelled, or
// claimed again by another worker) reads it and decides again. Bounded: forgotten all at once past
// kKept (a worker that lost jobs it never finishes). Thread-safe, and fork-safe (a fork waits).
class HeldJobs {
 public:
  static constexpr std::size_t kKept = 4096;
  void remember(const Record& record);
  void forget(std::string_view key);
  // The held record of `key` if its lease token is `token`.
  [[nodiscard]] std::optional<Record> recall(std::string_view key, std::uint64_t token);

 private:
  std::mutex mutex_;
  std::unordered_map<std::string, Record> held_;
};

// A job queue on Store::update alone. Claim scans the store's records for claimable jobs (fine for
// the filesystem and memory stores' sizes; SQLite and Redis use their indexes).
class UpdateJobQueue {
 public:
  explicit UpdateJobQueue(Store& store) : store_(store) {}

  std::vector<std::string> enqueue_many(std::span<const JobRequest> requests, time_point now);
  // `candidates` are the records to consider (in any order).
  std::vector<Lease> claim(std::vector<Record> candidates, std::span<const std::string> queues,
                           std::string_view worker, std::chrono::milliseconds lease,
                           std::size_t max, time_point now);
  LeaseState heartbeat(std::string_view id, std::uint64_t token, std::chrono::milliseconds lease,
                       time_point now);
  bool complete(std::string_view id, std::uint64_t token, const nlohmann::json& value,
                time_point now);
  bool fail(std::string_view id, std::uint64_t token, const ErrorInfo& error, bool retryable,
            time_point now);
  bool release(std::string_view id, std::uint64_t token, time_point now);
  bool cancel(std::string_view id, time_point now);

  // Every record of the store (for claim's candidates): keys() then find().
  std::vector<Record> all_records();

 private:
  // Runs `change` on the record under `id` inside update(); true if it changed it.
  template <class Change>
  bool change(std::string_view id, Change&& change);

  Store& store_;
};

}  // namespace strand::detail
