#include "strand/memory_store.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <unordered_map>

#include "job_logic.hpp"
#include "store_detail.hpp"

namespace strand {
namespace {

// Hashes a key as std::string or std::string_view alike, so lookups need no std::string.
struct KeyHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view key) const noexcept {
    return std::hash<std::string_view>{}(key);
  }
};

}  // namespace

// The records are split in shards by the hash of their key, each with its own mutex: threads
// writing different computations (a launcher and the workers finishing others) rarely meet on a
// lock, where one mutex for the whole store was the pool benchmark's main cost (the sleeping
// waiters' futex wake-ups). Waiting is kept apart from the shards: `writes` counts every write, and
// a writer takes `wait_mutex` to notify only when someone waits.
struct MemoryStore::Impl {
  static constexpr std::size_t kShards = 16;
  struct Shard {
    std::mutex mutex;
    std::unordered_map<std::string, Record, KeyHash, std::equal_to<>> records;
  };
  std::array<Shard, kShards> shards;

  std::mutex wait_mutex;
  std::condition_variable changed;  // any write: waiters re-check what they wait for
  std::atomic<std::uint64_t> writes{0};
  std::atomic<int> waiters{0};

  Shard& shard(std::string_view key) { return shards[KeyHash{}(key) % kShards]; }

  // Called after every write, with no shard locked. A waiter counts itself in `waiters` before it
  // reads `writes` (both sequentially consistent), so either it sees this write or this sees it.
  void wrote() {
    writes.fetch_add(1);
    if (waiters.load() == 0) return;
    { std::lock_guard lock(wait_mutex); }  // a waiter between its check and its wait is in wait
    changed.notify_all();
  }

  // Counts a waiter for as long as it lives.
  struct Waiting {
    explicit Waiting(Impl& impl) : impl(impl) { impl.waiters.fetch_add(1); }
    ~Waiting() { impl.waiters.fetch_sub(1); }
    Waiting(const Waiting&) = delete;
    Waiting& operator=(const Waiting&) = delete;
    Impl& impl;
  };
};

std::shared_ptr<MemoryStore> MemoryStore::open(StoreOptions options) {
  return std::make_shared<MemoryStore>(options);
}

MemoryStore::MemoryStore(StoreOptions options) : Store(options), impl_(std::make_unique<Impl>()) {}

MemoryStore::~MemoryStore() = default;

std::optional<Record> MemoryStore::find(std::string_view key) {
  validate_key(key);
  maybe_cleanup();
  auto& shard = impl_->shard(key);
  std::lock_guard lock(shard.mutex);
  const auto it = shard.records.find(key);
  if (it == shard.records.end() || is_expired(it->second)) return std::nullopt;
  return it->second;
}

Record MemoryStore::set(Record record) {
  validate_key(record.key);
  maybe_cleanup();
  Record stored = record;  // copied before the lock: the lock covers a move
  auto& shard = impl_->shard(record.key);
  {
    std::lock_guard lock(shard.mutex);
    auto [it, inserted] = shard.records.try_emplace(record.key);
    detail::stamp(stored, inserted ? nullptr : &it->second);
    record.version = stored.version;
    record.created = stored.created;
    std::swap(it->second, stored);  // the replaced record is freed after the lock
  }
  impl_->wrote();
  return record;
}

std::optional<Record> MemoryStore::update(std::string_view key, const UpdateFn& f) {
  validate_key(key);
  std::optional<Record> result;
  auto& shard = impl_->shard(key);
  {
    std::lock_guard lock(shard.mutex);
    const auto it = shard.records.find(key);
    std::optional<Record> current;
    if (it != shard.records.end() && !is_expired(it->second)) current = it->second;
    std::optional<Record> next = f(current);
    if (!next) return current;
    next->key = std::string(key);
    detail::stamp(*next, current ? &*current : nullptr);
    if (it != shard.records.end()) {
      it->second = *next;
    } else {
      shard.records.emplace(next->key, *next);
    }
    result = std::move(next);
  }
  impl_->wrote();
  return result;
}

std::vector<bool> MemoryStore::finish_many(std::span<const Outcome> outcomes) {
  // In place: only the outcome's fields are written, no record is copied.
  std::vector<bool> written(outcomes.size(), false);
  for (std::size_t i = 0; i < outcomes.size(); ++i) {
    const Outcome& outcome = outcomes[i];
    validate_key(outcome.key);
    auto& shard = impl_->shard(outcome.key);
    std::lock_guard lock(shard.mutex);
    auto it = shard.records.find(outcome.key);
    const bool live = it != shard.records.end() && !is_expired(it->second);
    if (live && is_terminal(it->second.status)) continue;  // cancelled meanwhile
    std::optional<Record> r;
    if (!live) {  // missing (or expired): written as new, as update() would
      r.emplace();
      r->key = std::string(outcome.key);
      detail::apply_outcome(r, outcome);
      detail::stamp(*r, it != shard.records.end() ? &it->second : nullptr);
      if (it != shard.records.end()) {
        it->second = std::move(*r);
      } else {
        shard.records.emplace(r->key, std::move(*r));
      }
    } else {
      detail::write_outcome(it->second, outcome);
      ++it->second.version;
    }
    written[i] = true;
  }
  impl_->wrote();
  return written;
}

bool MemoryStore::erase(std::string_view key) {
  validate_key(key);
  auto& shard = impl_->shard(key);
  std::lock_guard lock(shard.mutex);
  const auto it = shard.records.find(key);
  if (it == shard.records.end()) return false;
  shard.records.erase(it);
  return true;
}

std::vector<std::string> MemoryStore::keys() {
  std::vector<std::string> out;
  for (auto& shard : impl_->shards) {
    std::lock_guard lock(shard.mutex);
    for (const auto& [key, record] : shard.records) {
      if (!is_expired(record)) out.push_back(key);
    }
  }
  std::sort(out.begin(), out.end());  // in key order, as the other stores list them
  return out;
}

std::size_t MemoryStore::size() {
  std::size_t n = 0;
  for (auto& shard : impl_->shards) {
    std::lock_guard lock(shard.mutex);
    n += static_cast<std::size_t>(
        std::count_if(shard.records.begin(), shard.records.end(),
                      [&](const auto& e) { return !is_expired(e.second); }));
  }
  return n;
}

std::size_t MemoryStore::cleanup_expired() {
  std::size_t n = 0;
  for (auto& shard : impl_->shards) {
    std::lock_guard lock(shard.mutex);
    n += std::erase_if(shard.records, [&](const auto& entry) { return is_expired(entry.second); });
  }
  return n;
}

Record MemoryStore::wait_terminal(std::string_view key, clock::time_point deadline) {
  validate_key(key);
  const Impl::Waiting waiting(*impl_);
  auto& shard = impl_->shard(key);
  const auto current = [&] {
    std::lock_guard lock(shard.mutex);
    const auto it = shard.records.find(key);
    if (it != shard.records.end()) return it->second;
    Record r;
    r.key = std::string(key);
    return r;
  };
  std::unique_lock lock(impl_->wait_mutex);
  for (;;) {
    const std::uint64_t seen = impl_->writes.load();
    Record r = current();
    if (is_terminal(r.status)) return r;
    if (!impl_->changed.wait_until(lock, deadline, [&] { return impl_->writes.load() != seen; })) {
      return current();
    }
  }
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
  for (auto& shard : impl_->shards) {
    std::lock_guard lock(shard.mutex);
    for (const auto& [key, record] : shard.records) {
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
  const Impl::Waiting waiting(*impl_);
  // Made before the lock is taken: it runs at once, taking the lock, if stop is already requested.
  std::stop_callback wake(stop, [this] {
    { std::lock_guard relock(impl_->wait_mutex); }
    impl_->changed.notify_all();
  });
  std::unique_lock lock(impl_->wait_mutex);
  const std::uint64_t seen = impl_->writes.load();  // counted as waiting: no later write is missed
  // Wake on a write, on `stop`, or when the earliest delayed job or lease in `queues` comes due.
  const auto wall = std::chrono::system_clock::now();
  const auto steady = JobQueue::clock::now();
  auto until = deadline;
  for (auto& shard : impl_->shards) {
    std::lock_guard shard_lock(shard.mutex);
    for (const auto& [key, r] : shard.records) {
      if (!r.job || std::find(queues.begin(), queues.end(), r.job->queue) == queues.end()) continue;
      std::optional<Record::time_point> due;
      if (r.status == Status::queued) due = r.job->run_at;
      if (r.status == Status::running) due = r.job->lease_expires;
      if (!due) continue;
      if (*due <= wall) return;  // claimable now
      until = std::min(until, steady + std::chrono::duration_cast<JobQueue::clock::duration>(
                                           *due - wall + std::chrono::milliseconds(1)));
    }
  }
  impl_->changed.wait_until(lock, until,
                            [&] { return impl_->writes.load() != seen || stop.stop_requested(); });
}

}  // namespace strand
