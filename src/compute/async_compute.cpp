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
  const auto now = std::chrono::system_clock::now();
  bool written = false;
  (void)store.update(key, [&](std::optional<Record> r) -> std::optional<Record> {
    if (r && is_terminal(r->status)) return std::nullopt;  // cancelled meanwhile: drop the result
    if (!r) r.emplace();
    r->status = Status::completed;
    r->value = value;
    r->completed = now;
    r->progress = 1;
    written = true;
    return r;
  });
  return written;
}

bool record_failure(Store& store, const std::string& key, const ErrorInfo& error) {
  const auto now = std::chrono::system_clock::now();
  bool written = false;
  (void)store.update(key, [&](std::optional<Record> r) -> std::optional<Record> {
    if (r && is_terminal(r->status)) return std::nullopt;
    if (!r) r.emplace();
    r->status = Status::failed;
    r->error = error;
    r->completed = now;
    written = true;
    return r;
  });
  return written;
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
