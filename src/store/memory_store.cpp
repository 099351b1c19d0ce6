#include "strand/memory_store.hpp"

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>

#include "job_logic.hpp"

namespace strand {

struct MemoryStore::Impl {
  std::mutex mutex;
  std::condition_variable changed;  // any write: waiters re-check their key
  std::map<std::string, Record, std::less<>> records;
  std::uint64_t writes = 0;  // grows with every write: what wait_for_jobs watches
};

std::shared_ptr<MemoryStore> MemoryStore::open(StoreOptions options) {
  return std::make_shared<MemoryStore>(options);
}

MemoryStore::MemoryStore(StoreOptions options) : Store(options), impl_(std::make_unique<Impl>()) {}

MemoryStore::~MemoryStore() = default;

std::optional<Record> MemoryStore::find(std::string_view key) {
  validate_key(key);
  maybe_cleanup();
  std::lock_guard lock(impl_->mutex);
  const auto it = impl_->records.find(key);
  if (it == impl_->records.end() || is_expired(it->second)) return std::nullopt;
  return it->second;
}

namespace {
// Stamps what the store owns on a record about to be written over `previous`.
void stamp(Record& r, const Record* previous) {
  r.version = previous != nullptr ? previous->version + 1 : 1;
  if (r.created == Record::time_point{}) {
    r.created = previous != nullptr && previous->created != Record::time_point{}
                    ? previous->created
                    : std::chrono::system_clock::now();
  }
}
}  // namespace

Record MemoryStore::set(Record record) {
  validate_key(record.key);
  maybe_cleanup();
  {
    std::lock_guard lock(impl_->mutex);
    auto& slot = impl_->records[record.key];
    stamp(record, slot.version != 0 ? &slot : nullptr);
    slot = record;
    ++impl_->writes;
  }
  impl_->changed.notify_all();
  return record;
}

std::optional<Record> MemoryStore::update(std::string_view key, const UpdateFn& f) {
  validate_key(key);
  std::optional<Record> result;
  {
    std::lock_guard lock(impl_->mutex);
    const auto it = impl_->records.find(key);
    std::optional<Record> current;
    if (it != impl_->records.end() && !is_expired(it->second)) current = it->second;
    std::optional<Record> next = f(current);
    if (!next) return current;
    next->key = std::string(key);
    stamp(*next, current ? &*current : nullptr);
    impl_->records.insert_or_assign(std::string(key), *next);
    ++impl_->writes;
    result = std::move(next);
  }
  impl_->changed.notify_all();
  return result;
}

bool MemoryStore::erase(std::string_view key) {
  validate_key(key);
  std::lock_guard lock(impl_->mutex);
  const auto it = impl_->records.find(key);
  if (it == impl_->records.end()) return false;
  impl_->records.erase(it);
  return true;
}

std::vector<std::string> MemoryStore::keys() {
  std::lock_guard lock(impl_->mutex);
  std::vector<std::string> out;
  out.reserve(impl_->records.size());
  for (const auto& [key, record] : impl_->records) {
    if (!is_expired(record)) out.push_back(key);
  }
  return out;
}

std::size_t MemoryStore::size() {
  return keys().size();
}

std::size_t MemoryStore::cleanup_expired() {
  std::lock_guard lock(impl_->mutex);
  return std::erase_if(impl_->records, [&](const auto& entry) { return is_expired(entry.second); });
}

Record MemoryStore::wait_terminal(std::string_view key, clock::time_point deadline) {
  validate_key(key);
  std::unique_lock lock(impl_->mutex);
  const auto current = [&] {
    const auto it = impl_->records.find(key);
    if (it != impl_->records.end()) return it->second;
    Record r;
    r.key = std::string(key);
    return r;
  };
  Record r = current();
  while (!is_terminal(r.status)) {
    if (impl_->changed.wait_until(lock, deadline) == std::cv_status::timeout) return current();
    r = current();
  }
  return r;
}

Record::time_point MemoryStore::now() {
  return std::chrono::system_clock::now();
}

std::vector<std::string> MemoryStore::enqueue_many(std::span<const JobRequest> requests) {
  return detail::UpdateJobQueue(*this).enqueue_many(requests, now());
}

std::vector<Lease> MemoryStore::claim(std::span<const std::string> queues, std::string_view worker,
                                      std::chrono::milliseconds lease, std::size_t max) {
  const auto at = now();
  std::vector<Record> candidates;  // only the claimable ones are copied
  {
    std::lock_guard lock(impl_->mutex);
    for (const auto& [key, record] : impl_->records) {
      if (detail::is_claimable(record, at) &&
          std::find(queues.begin(), queues.end(), record.job->queue) != queues.end()) {
        candidates.push_back(record);
      }
    }
  }
  return detail::UpdateJobQueue(*this).claim(std::move(candidates), queues, worker, lease, max, at);
}

LeaseState MemoryStore::heartbeat(std::string_view id, std::uint64_t token,
                                  std::chrono::milliseconds lease) {
  return detail::UpdateJobQueue(*this).heartbeat(id, token, lease, now());
}

bool MemoryStore::complete(std::string_view id, std::uint64_t token, const nlohmann::json& value) {
  return detail::UpdateJobQueue(*this).complete(id, token, value, now());
}

bool MemoryStore::fail(std::string_view id, std::uint64_t token, const ErrorInfo& error,
                       bool retryable) {
  return detail::UpdateJobQueue(*this).fail(id, token, error, retryable, now());
}

bool MemoryStore::release(std::string_view id, std::uint64_t token) {
  return detail::UpdateJobQueue(*this).release(id, token, now());
}

bool MemoryStore::cancel_job(std::string_view id) {
  return detail::UpdateJobQueue(*this).cancel(id, now());
}

void MemoryStore::wait_for_jobs(std::span<const std::string> queues,
                                JobQueue::clock::time_point deadline, std::stop_token stop) {
  // Made before the lock is taken: it runs at once, taking the lock, if stop is already requested.
  std::stop_callback wake(stop, [this] {
    std::lock_guard relock(impl_->mutex);
    impl_->changed.notify_all();
  });
  std::unique_lock lock(impl_->mutex);
  // Wake on a write, on `stop`, or when the earliest delayed job or lease in `queues` comes due.
  const auto wall = std::chrono::system_clock::now();
  const auto steady = JobQueue::clock::now();
  auto until = deadline;
  for (const auto& [key, r] : impl_->records) {
    if (!r.job || std::find(queues.begin(), queues.end(), r.job->queue) == queues.end()) continue;
    std::optional<Record::time_point> due;
    if (r.status == Status::queued) due = r.job->run_at;
    if (r.status == Status::running) due = r.job->lease_expires;
    if (!due) continue;
    if (*due <= wall) return;  // claimable now
    until = std::min(until, steady + std::chrono::duration_cast<JobQueue::clock::duration>(
                                         *due - wall + std::chrono::milliseconds(1)));
  }
  const std::uint64_t seen = impl_->writes;
  impl_->changed.wait_until(lock, until,
                            [&] { return impl_->writes != seen || stop.stop_requested(); });
}

}  // namespace strand
