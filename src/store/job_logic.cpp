#include "job_logic.hpp"

#include <algorithm>
#include <random>
#include <stdexcept>

#include "../core/fork_hooks.hpp"

namespace strand {

std::string_view to_string(LeaseState state) noexcept {
  switch (state) {
    case LeaseState::held:
      return "held";
    case LeaseState::cancelled:
      return "cancelled";
    case LeaseState::lost:
      return "lost";
  }
  return "unknown";
}

std::string JobQueue::enqueue(const JobRequest& request) {
  return enqueue_many(std::span(&request, 1)).front();
}

std::vector<bool> JobQueue::complete_many(std::span<const Completion> completions) {
  std::vector<bool> recorded;
  recorded.reserve(completions.size());
  for (const Completion& c : completions) recorded.push_back(complete(c.id, c.token, *c.value));
  return recorded;
}

std::shared_ptr<JobQueue> job_queue(const std::shared_ptr<Store>& store) {
  if (!store) throw std::invalid_argument("strand: job_queue() of a null store");
  if (auto queue = std::dynamic_pointer_cast<JobQueue>(store)) return queue;
  throw NoJobQueue("strand: the store \"" + store->url() + "\" has no job queue");
}

namespace detail {
namespace {

// A job's history keeps its latest attempts: a job whose workers keep dying must not grow without
// bound.
constexpr std::size_t kHistoryKept = 100;

void end_attempt(Job& job, std::string_view outcome, time_point now,
                 std::optional<ErrorInfo> error = std::nullopt) {
  if (job.history.empty()) return;
  JobAttempt& last = job.history.back();
  last.outcome = std::string(outcome);
  last.ended = now;
  last.error = std::move(error);
}

bool holds(const Record& r, std::uint64_t token) {
  return r.job && r.status == Status::running && r.job->token == token;
}

}  // namespace

std::string job_id(Store& store, const JobRequest& request) {
  if (request.options.idempotency_key.empty()) return store.create_key();
  validate_key(request.options.idempotency_key);
  std::string id = "idem-" + request.options.idempotency_key;
  validate_key(id);  // the prefix may make it too long
  return id;
}

Record new_job_record(std::string id, const JobRequest& request, time_point now) {
  const JobOptions& o = request.options;
  if (request.function.empty()) {
    throw std::invalid_argument("strand: a job needs a function name");
  }
  if (!request.args.is_array()) {
    throw std::invalid_argument("strand: the arguments of job \"" + request.function +
                                "\" must be a JSON array, one element per argument");
  }
  if (o.queue.empty()) throw std::invalid_argument("strand: a job's queue name is empty");
  if (o.max_retries < 0) throw std::invalid_argument("strand: max_retries is negative");
  Record r;
  r.key = std::move(id);
  r.status = Status::queued;
  r.created = now;
  r.metadata = o.metadata.is_null() ? nlohmann::json::object() : o.metadata;
  Job& job = r.job.emplace();
  job.function = request.function;
  job.args = request.args;
  job.queue = o.queue;
  job.priority = o.priority;
  job.max_retries = o.max_retries;
  job.retry_backoff = o.retry_backoff;
  job.timeout = o.timeout;
  job.idempotency_key = o.idempotency_key;
  job.run_at = o.start_at ? *o.start_at : now + o.delay;
  return r;
}

bool is_claimable(const Record& r, time_point now) noexcept {
  if (!r.job) return false;
  if (r.status == Status::queued) return r.job->run_at <= now;
  return r.status == Status::running && r.job->lease_expires && *r.job->lease_expires < now;
}

std::optional<time_point> next_due(const std::vector<Record>& records,
                                   std::span<const std::string> queues, time_point now) {
  std::optional<time_point> due;
  for (const Record& r : records) {
    if (!r.job || std::find(queues.begin(), queues.end(), r.job->queue) == queues.end()) continue;
    std::optional<time_point> at;
    if (r.status == Status::queued) at = r.job->run_at;
    if (r.status == Status::running) at = r.job->lease_expires;
    if (at && (!due || *at < *due)) due = at;
    if (due && *due <= now) break;
  }
  return due;
}

bool claims_before(const Record& a, const Record& b) noexcept {
  if (a.job->priority != b.job->priority) return a.job->priority > b.job->priority;
  if (a.job->run_at != b.job->run_at) return a.job->run_at < b.job->run_at;
  return a.key < b.key;
}

void claim_job(Record& r, std::string_view worker, time_point now,
               std::chrono::milliseconds lease) {
  Job& job = *r.job;
  if (r.status == Status::running) end_attempt(job, "lease expired", now);
  ++job.token;
  job.worker = std::string(worker);
  job.lease_expires = now + lease;
  if (job.history.size() >= kHistoryKept) job.history.erase(job.history.begin());
  job.history.push_back({.token = job.token, .worker = job.worker, .started = now});
  r.status = Status::running;
  r.started = now;
}

LeaseState heartbeat_job(Record& r, std::uint64_t token, time_point now,
                         std::chrono::milliseconds lease) {
  if (!r.job || r.job->token != token) return LeaseState::lost;
  if (r.status == Status::cancelled) return LeaseState::cancelled;
  if (r.status != Status::running) return LeaseState::lost;
  r.job->lease_expires = now + lease;
  return LeaseState::held;
}

bool complete_job(Record& r, std::uint64_t token, const nlohmann::json& value, time_point now) {
  if (!holds(r, token)) return false;
  end_attempt(*r.job, "completed", now);
  r.job->lease_expires.reset();
  r.status = Status::completed;
  r.value = value;
  r.error.reset();
  r.completed = now;
  r.progress = 1;
  return true;
}

bool fail_job(Record& r, std::uint64_t token, const ErrorInfo& error, bool retryable,
              time_point now) {
  if (!holds(r, token)) return false;
  Job& job = *r.job;
  end_attempt(job, "failed", now, error);
  job.lease_expires.reset();
  ++job.failures;
  if (retryable && job.failures <= job.max_retries) {
    r.status = Status::queued;
    job.run_at = now + retry_delay(job.retry_backoff, job.failures);
  } else {
    r.status = Status::failed;
    r.error = error;
    r.completed = now;
  }
  return true;
}

bool release_job(Record& r, std::uint64_t token, time_point now) {
  if (!holds(r, token)) return false;
  end_attempt(*r.job, "released", now);
  r.job->lease_expires.reset();
  r.job->run_at = now;
  r.status = Status::queued;
  return true;
}

bool cancel_job(Record& r, time_point now) {
  if (!r.job ||
      (r.status != Status::queued && r.status != Status::running && r.status != Status::pending)) {
    return false;
  }
  if (r.status == Status::running) end_attempt(*r.job, "cancelled", now);
  r.job->lease_expires.reset();
  r.status = Status::cancelled;
  r.completed = now;
  return true;
}

std::chrono::milliseconds retry_delay(std::chrono::milliseconds backoff, int failures) {
  thread_local std::mt19937 random(std::random_device{}());
  const double factor = std::uniform_real_distribution<double>(0.5, 1.5)(random);
  const int doublings = std::clamp(failures - 1, 0, 30);
  const double ms = static_cast<double>(backoff.count()) * static_cast<double>(1LL << doublings);
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::min(ms * factor, 3'600'000.0)));
}

template <class Change>
bool UpdateJobQueue::change(std::string_view id, Change&& change) {
  bool changed = false;
  store_.update(id, [&](std::optional<Record> r) -> std::optional<Record> {
    changed = false;  // update() may run this more than once
    if (!r || !r->job) return std::nullopt;
    if (!change(*r)) return std::nullopt;
    changed = true;
    return r;
  });
  return changed;
}

std::vector<std::string> UpdateJobQueue::enqueue_many(std::span<const JobRequest> requests,
                                                      time_point now) {
  std::vector<Record> records;  // all checked before any is written
  records.reserve(requests.size());
  for (const JobRequest& request : requests) {
    records.push_back(new_job_record(job_id(store_, request), request, now));
  }
  std::vector<std::string> ids;
  ids.reserve(records.size());
  for (Record& record : records) {
    store_.update(record.key, [&](std::optional<Record> current) -> std::optional<Record> {
      if (current) return std::nullopt;  // the idempotency key's first job stays
      return record;
    });
    ids.push_back(std::move(record.key));
  }
  return ids;
}

std::vector<Lease> UpdateJobQueue::claim(std::vector<Record> candidates,
                                         std::span<const std::string> queues,
                                         std::string_view worker, std::chrono::milliseconds lease,
                                         std::size_t max, time_point now) {
  std::erase_if(candidates, [&](const Record& r) {
    return !is_claimable(r, now) ||
           std::find(queues.begin(), queues.end(), r.job->queue) == queues.end();
  });
  std::sort(candidates.begin(), candidates.end(), claims_before);
  std::vector<Lease> leases;
  for (const Record& candidate : candidates) {
    if (leases.size() >= max) break;
    std::optional<Record> claimed;
    // Store::update may run the change more than once (Redis's is optimistic): a first run that
    // claimed, then lost to another client's write, leaves `claimed` set; only the last run says.
    const bool won = change(candidate.key, [&](Record& r) {
      if (!is_claimable(r, now)) return false;  // another worker was first
      claim_job(r, worker, now, lease);
      claimed = r;
      return true;
    });
    if (!won) continue;
    if (const auto stored = store_.find(candidate.key)) claimed->version = stored->version;
    const std::uint64_t token = claimed->job->token;
    const time_point expires = *claimed->job->lease_expires;
    leases.push_back(
        {.id = candidate.key, .token = token, .record = std::move(*claimed), .expires = expires});
  }
  return leases;
}

LeaseState UpdateJobQueue::heartbeat(std::string_view id, std::uint64_t token,
                                     std::chrono::milliseconds lease, time_point now) {
  LeaseState state = LeaseState::lost;
  change(id, [&](Record& r) {
    state = heartbeat_job(r, token, now, lease);
    return state == LeaseState::held;
  });
  return state;
}

bool UpdateJobQueue::complete(std::string_view id, std::uint64_t token, const nlohmann::json& value,
                              time_point now) {
  return change(id, [&](Record& r) { return complete_job(r, token, value, now); });
}

bool UpdateJobQueue::fail(std::string_view id, std::uint64_t token, const ErrorInfo& error,
                          bool retryable, time_point now) {
  return change(id, [&](Record& r) { return fail_job(r, token, error, retryable, now); });
}

bool UpdateJobQueue::release(std::string_view id, std::uint64_t token, time_point now) {
  return change(id, [&](Record& r) { return release_job(r, token, now); });
}

bool UpdateJobQueue::cancel(std::string_view id, time_point now) {
  return change(id, [&](Record& r) { return cancel_job(r, now); });
}

void HeldJobs::remember(const Record& record) {
  const ForkQuiet quiet;
  const std::lock_guard lock(mutex_);
  if (held_.size() >= kKept) held_.clear();
  held_.insert_or_assign(record.key, record);
}

void HeldJobs::forget(std::string_view key) {
  const ForkQuiet quiet;
  const std::lock_guard lock(mutex_);
  if (const auto it = held_.find(std::string(key)); it != held_.end()) held_.erase(it);
}

std::optional<Record> HeldJobs::recall(std::string_view key, std::uint64_t token) {
  const ForkQuiet quiet;
  const std::lock_guard lock(mutex_);
  const auto it = held_.find(std::string(key));
  if (it == held_.end() || !it->second.job || it->second.job->token != token) return std::nullopt;
  return it->second;
}

std::vector<Record> UpdateJobQueue::all_records() {
  std::vector<Record> out;
  for (const std::string& key : store_.keys()) {
    if (auto r = store_.find(key); r && r->job) out.push_back(std::move(*r));
  }
  return out;
}

}  // namespace detail
}  // namespace strand
