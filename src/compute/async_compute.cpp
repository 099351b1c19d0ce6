#include "strand/async_compute.hpp"

#include <unistd.h>

#include <random>
#include <system_error>

namespace strand {
namespace detail {
namespace {

void report_hook_error(const char* which) {
  report_error(which, std::current_exception());
}

}  // namespace

std::shared_ptr<const ComputeShared> make_compute_shared(ComputeOptions options) {
  auto shared = std::make_shared<ComputeShared>();
  if (!options.store) {
    const auto dir = options.base_path.empty()
                         ? std::filesystem::temp_directory_path() / "strand-computations"
                         : options.base_path;
    options.store = open_store("file://" + std::filesystem::absolute(dir).string(),
                               StoreOptions{.format = options.format, .ttl = options.ttl});
  }
  shared->store = std::move(options.store);
  shared->middleware = std::move(options.middleware);
  shared->name = std::move(options.name);
  shared->backend = options.backend;
  shared->pool = options.pool;
  shared->process = options.process;
  shared->store_crosses_processes = shared->store->shared_across_processes();
  return shared;
}

std::exception_ptr run_before_hooks(const ComputeShared& shared, const ComputationInfo& info) {
  for (const auto& m : shared.middleware) {
    try {
      m->before(info);
    } catch (const Rejected&) {
      return std::current_exception();
    } catch (...) {
      report_hook_error("strand: a middleware's before() threw; the computation goes on");
    }
  }
  return nullptr;
}

Record launch_record(const ComputeShared& shared, const std::string& key) {
  Record r;
  r.key = key;
  r.status = Status::running;
  r.started = std::chrono::system_clock::now();
  r.metadata = {{"function", shared.name}, {"backend", std::string(to_string(shared.backend))}};
  return r;
}

bool record_success(Store& store, const std::string& key, const nlohmann::json& value) {
  const Outcome outcome{key, &value, nullptr, std::chrono::system_clock::now()};
  return store.finish_many(std::span(&outcome, 1)).front();
}

bool record_failure(Store& store, const std::string& key, const ErrorInfo& error) {
  const Outcome outcome{key, nullptr, &error, std::chrono::system_clock::now()};
  return store.finish_many(std::span(&outcome, 1)).front();
}

void run_after_hooks(const ComputeShared& shared, ComputationInfo info,
                     std::chrono::steady_clock::time_point started, const nlohmann::json& value) {
  info.elapsed = std::chrono::steady_clock::now() - started;
  for (const auto& m : shared.middleware) {
    try {
      m->after(info, value);
    } catch (...) {
      report_hook_error("strand: a middleware's after() threw");
    }
  }
}

void run_error_hooks(const ComputeShared& shared, ComputationInfo info,
                     std::chrono::steady_clock::time_point started, const ErrorInfo& error) {
  info.elapsed = std::chrono::steady_clock::now() - started;
  for (const auto& m : shared.middleware) {
    try {
      m->on_error(info, error);
    } catch (...) {
      report_hook_error("strand: a middleware's on_error() threw");
    }
  }
}

namespace {
// The recorder this thread is draining, if any: a launch from its hooks or handle continuations
// writes at once rather than wait for itself.
thread_local const OutcomeRecorder* draining = nullptr;
}  // namespace

void OutcomeRecorder::launch(const ComputeShared& shared, std::span<Record> records) {
  if (records.empty()) return;
  if (!shared.store->groups_writes() || draining == this) {
    for (Record& r : records) r = shared.store->set(std::move(r));
    return;
  }
  Launch launch{records, false, nullptr};
  std::unique_lock lock(mutex_);
  launches_.push_back(&launch);
  if (recording_) {
    launch_written_.wait(lock, [&] { return launch.written; });
  } else {
    recording_ = true;
    lock.unlock();
    drain(shared);  // its first write takes this launch
  }
  if (launch.error) std::rethrow_exception(launch.error);
}

void OutcomeRecorder::finish(const ComputeShared& shared, FinishedComputation finished) {
  if (!shared.store->groups_writes()) {
    // Nothing to gain by gathering (a file, a record in memory, a round trip each): each thread
    // writes its own, and threads write at once.
    record(shared, {}, std::span(&finished, 1));
    return;
  }
  {
    std::lock_guard lock(mutex_);
    queued_.push_back(std::move(finished));
    if (recording_) return;  // the recording thread takes it with its next write
    recording_ = true;
  }
  drain(shared);
}

void OutcomeRecorder::drain(const ComputeShared& shared) {
  const OutcomeRecorder* const outer = std::exchange(draining, this);
  std::vector<Launch*> launches;
  std::vector<FinishedComputation> batch;
  for (;;) {
    {
      std::lock_guard lock(mutex_);
      if (queued_.empty() && launches_.empty()) {
        recording_ = false;
        break;
      }
      launches.swap(launches_);
      batch.swap(queued_);
    }
    record(shared, launches, batch);
    launches.clear();
    batch.clear();
  }
  draining = outer;
}

void OutcomeRecorder::record(const ComputeShared& shared, std::span<Launch* const> launches,
                             std::span<FinishedComputation> batch) {
  std::vector<Record> records;
  for (Launch* l : launches) {
    for (Record& r : l->records) records.push_back(std::move(r));
  }
  std::vector<ErrorInfo> errors(batch.size());
  std::vector<Outcome> outcomes;
  outcomes.reserve(batch.size());
  const auto now = std::chrono::system_clock::now();
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const FinishedComputation& c = batch[i];
    if (c.error) {
      errors[i] = error_info(c.error);
      outcomes.push_back({c.key, nullptr, &errors[i], now});
    } else {
      outcomes.push_back({c.key, &c.value, nullptr, now});
    }
  }
  std::vector<bool> written;
  std::exception_ptr failure;
  try {
    written = shared.store->write_many(records, outcomes);
  } catch (...) {
    failure = std::current_exception();  // nothing written: a full disk, a lost server
  }
  if (!launches.empty()) {
    {
      std::lock_guard lock(mutex_);
      auto written_record = records.begin();
      for (Launch* l : launches) {
        for (Record& r : l->records) r = std::move(*written_record++);
        l->error = failure;
        l->written = true;
      }
    }
    launch_written_.notify_all();
  }
  if (failure) {
    for (FinishedComputation& c : batch) c.done.set_exception(failure);
    return;
  }
  for (std::size_t i = 0; i < batch.size(); ++i) {
    FinishedComputation& c = batch[i];
    // Not written: cancelled meanwhile. The handle still completes; get_result reads the record.
    if (written[i]) {
      const ComputationInfo info{c.key, shared.name, shared.backend, {}};
      if (c.error) {
        run_error_hooks(shared, info, c.started, errors[i]);
      } else {
        run_after_hooks(shared, info, c.started, c.value);
      }
    }
    if (c.error) {
      c.done.set_exception(c.error);
    } else {
      c.done.set_value();
    }
  }
}

std::shared_ptr<Store> reopen_in_child(const Store& store) {
  return open_store(store.url(), store.options());
}

}  // namespace detail

TemporaryCompute::TemporaryCompute(ComputeOptions options) : options_(std::move(options)) {
  std::random_device random;
  for (int attempt = 0;; ++attempt) {
    auto candidate =
        std::filesystem::temp_directory_path() /
        ("strand-temporary-" + std::to_string(::getpid()) + "-" + std::to_string(random()));
    std::error_code ec;
    if (std::filesystem::create_directory(candidate, ec)) {
      path_ = std::move(candidate);
      break;
    }
    if (attempt > 100) {
      throw StoreError("strand: temporary_async_compute could not make a directory in " +
                       std::filesystem::temp_directory_path().string() + ": " + ec.message());
    }
  }
  options_.store = open_store("file://" + path_.string(),
                              StoreOptions{.format = options_.format, .ttl = options_.ttl});
}

TemporaryCompute::~TemporaryCompute() {
  std::error_code ec;  // a destructor must not throw; a directory left behind is only litter
  std::filesystem::remove_all(path_, ec);
}

}  // namespace strand
