#include "strand/computation.hpp"

#include "strand/job_queue.hpp"

#include <algorithm>

namespace strand {
namespace {

thread_local Store* current_store = nullptr;
thread_local std::string current_key;
thread_local std::optional<std::uint64_t> current_token;  // a job's lease token

}  // namespace

bool report_progress(double fraction, std::string_view message) {
  if (current_store == nullptr) return false;
  fraction = std::clamp(fraction, 0.0, 1.0);
  (void)current_store->update(current_key, [&](std::optional<Record> r) -> std::optional<Record> {
    // A finished record keeps what it has; a job's, only its lease holder writes.
    if (r && is_terminal(r->status)) return std::nullopt;
    if (current_token &&
        (!r || !r->job || r->status != Status::running || r->job->token != *current_token)) {
      return std::nullopt;
    }
    if (!r) {
      r.emplace();
      r->status = Status::running;
    }
    r->progress = fraction;
    r->progress_message = std::string(message);
    return r;
  });
  return true;
}

namespace detail {

ComputationScope::ComputationScope(Store& store, std::string key,
                                   std::optional<std::uint64_t> job_token)
    : previous_store_(current_store),
      previous_key_(std::exchange(current_key, std::move(key))),
      previous_token_(std::exchange(current_token, job_token)) {
  current_store = &store;
}

ComputationScope::~ComputationScope() {
  current_token = previous_token_;
  current_store = previous_store_;
  current_key = std::move(previous_key_);
}

namespace {
// A finished record as get_result sees it: returned if completed, else thrown as its outcome.
Record outcome(Record r, const std::string& key) {
  switch (r.status) {
    case Status::completed:
      return r;
    case Status::failed:
      if (r.error) std::rethrow_exception(to_exception(*r.error));
      throw Error("strand: computation " + key + " failed without a recorded error");
    case Status::cancelled:
      throw Cancelled("strand: computation " + key + " was cancelled");
    default:
      throw NotReady("strand: computation " + key + " has not finished yet");
  }
}
}  // namespace

Record finished_record(Store& store, const std::string& key, const Handle<void>* local,
                       std::optional<std::chrono::nanoseconds> timeout) {
  Record r;
  if (local != nullptr && local->valid()) {
    // The record is written before the in-process handle completes: waiting on the handle wakes
    // on the spot, with no store polling.
    if (timeout && !local->wait_for(*timeout)) throw Timeout(*timeout);
    // Without a timeout the record decides: a process child may have written it a moment before
    // the parent heard back.
    r = store.get(key);
    if (r.status == Status::failed && local->ready() && local->status() == Status::failed) {
      local->get();  // the very exception the function threw, with its type
    }
  } else if (timeout) {
    r = store.wait_terminal(key, std::chrono::steady_clock::now() + *timeout);
    if (!is_terminal(r.status)) throw Timeout(*timeout);
  } else {
    r = store.get(key);
  }
  return outcome(std::move(r), key);
}

std::vector<Record> finished_records(std::span<const Watched> computations,
                                     std::optional<std::chrono::nanoseconds> timeout) {
  using steady = std::chrono::steady_clock;
  // A plain time point (not an optional: GCC 12 then warns falsely that it may be unset).
  const steady::time_point deadline =
      timeout ? steady::now() + *timeout : steady::time_point::max();
  const std::size_t n = computations.size();
  std::vector<Record> records(n);
  std::vector<std::size_t> unfinished(n);  // indexes not yet read terminal, in order
  for (std::size_t i = 0; i < n; ++i) unfinished[i] = i;
  std::vector<Record> out;
  out.reserve(n);
  // Wait for the last one first: work is mostly done in order, so by then most of the others are
  // finished too, and one read takes them all. After each read, wait for the last unfinished one.
  const auto wait_for = [&](const Watched& c) {
    if (c.local != nullptr && c.local->valid()) {
      (void)c.local->wait_for(std::max(std::chrono::nanoseconds(0), deadline - steady::now()));
    } else {
      (void)c.store->wait_terminal(*c.key, deadline);
    }
  };
  if (timeout && n > 0) wait_for(computations.back());
  for (;;) {
    // Read every unfinished record: one find_many per run of the same store.
    for (std::size_t at = 0; at < unfinished.size();) {
      Store* store = computations[unfinished[at]].store;
      std::size_t end = at;
      std::vector<std::string> keys;
      for (; end < unfinished.size() && computations[unfinished[end]].store == store; ++end) {
        keys.push_back(*computations[unfinished[end]].key);
      }
      std::vector<std::optional<Record>> found = store->find_many(keys);
      for (std::size_t k = 0; k < keys.size(); ++k) {
        Record& r = records[unfinished[at + k]];
        if (found[k]) {
          r = std::move(*found[k]);
        } else {
          r = Record{};
          r.key = std::move(keys[k]);  // missing reads as pending
        }
      }
      at = end;
    }
    std::erase_if(unfinished, [&](std::size_t i) { return is_terminal(records[i].status); });
    // The finished prefix, in order: a failure there is thrown now.
    while (out.size() < n && is_terminal(records[out.size()].status)) {
      const Watched& c = computations[out.size()];
      Record& r = records[out.size()];
      if (r.status == Status::failed && c.local != nullptr && c.local->valid() &&
          c.local->ready() && c.local->status() == Status::failed) {
        c.local->get();  // the very exception the function threw, with its type
      }
      out.push_back(outcome(std::move(r), *c.key));
    }
    if (out.size() == n) return out;
    const std::size_t next = out.size();
    if (!timeout) outcome(std::move(records[next]), *computations[next].key);  // NotReady
    if (steady::now() >= deadline) throw Timeout(*timeout);
    wait_for(computations[unfinished.back()]);
  }
}

bool cancel_computation(Store& store, const std::string& key, const std::function<bool()>& stop) {
  // A job goes through its queue, which keeps its indexes and history right (and tells its worker).
  if (auto* queue = dynamic_cast<JobQueue*>(&store)) {
    if (const auto r = store.find(key); r && r->job) return queue->cancel_job(key);
  }
  const auto now = std::chrono::system_clock::now();
  const auto r = store.update(key, [&](std::optional<Record> r) -> std::optional<Record> {
    if (r && is_terminal(r->status)) return std::nullopt;  // too late
    if (!r) r.emplace();
    r->status = Status::cancelled;
    r->completed = now;
    return r;
  });
  const bool cancelled = r && r->status == Status::cancelled;
  // Only once the store says cancelled: a result recorded first stands, and the work is left alone.
  if (cancelled && stop) (void)stop();
  return cancelled;
}

}  // namespace detail
}  // namespace strand
