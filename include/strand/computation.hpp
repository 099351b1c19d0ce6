// strand/computation.hpp — the handle of a computation that lives in a store.
//
//   strand::ComputationHandle<int> c = fn(100);    // from an async_compute function
//   c.status();  c.is_ready();  c.progress();  c.metadata();
//   int v = c.get_result(30s);                     // waits; rethrows a failure with its type
//   c.cancel();
//
//   // Anywhere that sees the store (another thread, another process, a web request):
//   strand::ComputationHandle<int> again(c.key(), store);
//
// The store is the truth: status, result, error, progress and metadata are read from it. A handle
// made by the launching process also holds the computation's in-process Handle, so it wakes the
// moment the record is written and can stop the work for real (stop token, or killing the child).
// A re-attached handle waits through the store (Store::wait_terminal), and its cancel() marks the
// record cancelled, so a result that comes later is discarded.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "strand/handle.hpp"
#include "strand/serialize.hpp"
#include "strand/store.hpp"

namespace strand {

struct Progress {
  double fraction = 0;  // 0..1
  std::string message{};
};

// Inside a computation (any backend): records progress in its store, for progress() and
// `strand jobs wait` to read. Returns false, writing nothing, when called outside a computation.
bool report_progress(double fraction, std::string_view message = {});

namespace detail {

// The computation this thread is running, for report_progress. For a job, `job_token` is the
// lease's token: progress is written only while the job is running under it (a worker whose
// lease was taken over must not write over the new holder's progress).
class ComputationScope {
 public:
  ComputationScope(Store& store, std::string key,
                   std::optional<std::uint64_t> job_token = std::nullopt);
  ~ComputationScope();
  ComputationScope(const ComputationScope&) = delete;
  ComputationScope& operator=(const ComputationScope&) = delete;

 private:
  Store* previous_store_;
  std::string previous_key_;
  std::optional<std::uint64_t> previous_token_;
};

// Waits for the computation as get_result does and returns its completed record; throws for the
// other outcomes (NotReady, Timeout, Cancelled, the failure).
Record finished_record(Store& store, const std::string& key, const Handle<void>* local,
                       std::optional<std::chrono::nanoseconds> timeout);

// One computation for finished_records.
struct Watched {
  Store* store;
  const std::string* key;
  const Handle<void>* local;  // null for a re-attached handle
};

// finished_record of each, in order, sharing one timeout: waits for the last one, reads the
// unfinished records in one batch per store (Store::find_many), then waits for the last one still
// unfinished and reads again (see get_results).
std::vector<Record> finished_records(std::span<const Watched> computations,
                                     std::optional<std::chrono::nanoseconds> timeout);

// Marks the record cancelled unless it is finished; then `stop` (if any) stops the work itself.
bool cancel_computation(Store& store, const std::string& key, const std::function<bool()>& stop);

}  // namespace detail

template <class T>
class ComputationHandle;
template <class T>
std::vector<T> get_results(std::span<const ComputationHandle<T>> handles,
                           std::optional<std::chrono::nanoseconds> timeout = std::nullopt);

template <class T>
class ComputationHandle {
  static_assert(std::is_void_v<T> || Serializable<T>,
                "strand: a computation's result is kept in a store, so its type must be "
                "serializable (nlohmann to_json/from_json; see strand/serialize.hpp)");

 public:
  // Re-attaches to the computation `key` in `store` (InvalidKey for a malformed key).
  ComputationHandle(std::string key, std::shared_ptr<Store> store)
      : key_(std::move(key)), store_(std::move(store)) {
    validate_key(key_);
  }
  // What async_compute returns: the record's key, the in-process handle that completes once the
  // record is written, and what stops the work itself (a stop token, a child's kill).
  ComputationHandle(std::string key, std::shared_ptr<Store> store, Handle<void> local,
                    std::function<bool()> stop)
      : ComputationHandle(std::move(key), std::move(store)) {
    local_ = std::move(local);
    stop_ = std::move(stop);
  }

  [[nodiscard]] const std::string& key() const noexcept { return key_; }
  [[nodiscard]] const std::shared_ptr<Store>& store() const noexcept { return store_; }
  [[nodiscard]] Record record() const { return store_->get(key_); }
  [[nodiscard]] Status status() const { return record().status; }
  // True once completed, failed or cancelled.
  [[nodiscard]] bool is_ready() const { return is_terminal(status()); }
  [[nodiscard]] nlohmann::json metadata() const { return record().metadata; }
  [[nodiscard]] Progress progress() const {
    Record r = record();
    return {r.progress, std::move(r.progress_message)};
  }

  // The result if the computation is finished; NotReady if it is not. A failure rethrows with its
  // original type (in the launching process, the very exception; elsewhere the standard types as
  // themselves and others as RemoteError); a cancelled computation throws Cancelled.
  T get_result() const { return decode_result(finished(std::nullopt)); }
  // Waits up to `timeout` (by notification, not by polling in-process); Timeout if it runs out.
  T get_result(std::chrono::nanoseconds timeout) const { return decode_result(finished(timeout)); }

  // True if the computation will not complete: it was pending or running and is now cancelled.
  // From the launching process this stops the work for real.
  bool cancel() { return detail::cancel_computation(*store_, key_, stop_); }

 private:
  Record finished(std::optional<std::chrono::nanoseconds> timeout) const {
    return detail::finished_record(*store_, key_, local_ ? &*local_ : nullptr, timeout);
  }

  T decode_result([[maybe_unused]] const Record& r) const {
    if constexpr (std::is_void_v<T>) {
      return;
    } else {
      return from_document<T>(r.value, store_->format());
    }
  }

  template <class U>
  friend std::vector<U> get_results(std::span<const ComputationHandle<U>> handles,
                                    std::optional<std::chrono::nanoseconds> timeout);

  std::string key_;
  std::shared_ptr<Store> store_;
  std::optional<Handle<void>> local_;
  std::function<bool()> stop_;
};

// The results of many computations, in order, with one timeout for them all. It waits for the
// last one first (work mostly finishes in order), then reads the finished ones in one batch (one
// round trip on Redis) instead of one read each, and waits again for the last one not finished.
// Throws as get_result does for the first, in order, that failed or was cancelled; Timeout if the
// time runs out first; without a timeout it does not wait: NotReady if one has not finished.
//
//   std::vector<long> squares = strand::get_results(square.map(calls), 30s);
template <class T>
std::vector<T> get_results(std::span<const ComputationHandle<T>> handles,
                           std::optional<std::chrono::nanoseconds> timeout) {
  static_assert(!std::is_void_v<T>, "strand: get_results of ComputationHandle<void> has no values");
  std::vector<detail::Watched> watched;
  watched.reserve(handles.size());
  for (const ComputationHandle<T>& h : handles) {
    watched.push_back({h.store_.get(), &h.key_, h.local_ ? &*h.local_ : nullptr});
  }
  std::vector<Record> records = detail::finished_records(watched, timeout);
  std::vector<T> out;
  out.reserve(records.size());
  for (std::size_t i = 0; i < records.size(); ++i)
    out.push_back(handles[i].decode_result(records[i]));
  return out;
}
template <class T>
std::vector<T> get_results(const std::vector<ComputationHandle<T>>& handles,
                           std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
  return get_results(std::span<const ComputationHandle<T>>(handles), timeout);
}

}  // namespace strand
