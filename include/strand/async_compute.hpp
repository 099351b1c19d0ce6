// strand/async_compute.hpp — a function whose calls become computations kept in a store (the au
// seed's @async_compute).
//
//   auto factorial = strand::async_compute([](int n) { ... return result; });
//   strand::ComputationHandle<long> c = factorial(20);    // returns at once
//   c.get_result(30s);
//
//   auto store = strand::open_store("sqlite:///var/lib/app/jobs.db", {.ttl = 1h});
//   auto fn = strand::async_compute(expensive, {.store = store,
//                                               .backend = strand::Target::thread,
//                                               .middleware = {metrics}});
//   fn.cleanup_expired();  fn.store();  fn.backend();
//
// Defaults, as in the seed: a FileSystemStore under `base_path` (a directory in the temporary
// directory), the process backend, a TTL of one hour, JSON.
//
// Backends: `thread` (a thread per computation), `pool` (a ThreadPool), `process` (a forked child,
// which writes its result into the store itself when the store is shared across processes; the
// parent writes it otherwise), and `sync`. Whatever the backend, the record is written before the
// handle's in-process wait wakes, and middleware hooks run in the launching process.
#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stop_token>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "strand/callbacks.hpp"
#include "strand/computation.hpp"
#include "strand/middleware.hpp"
#include "strand/promise.hpp"
#include "strand/runner.hpp"
#include "strand/serialize.hpp"
#include "strand/store.hpp"
#include "strand/target.hpp"
#include "strand/thread_pool.hpp"

namespace strand {

struct ComputeOptions {
  // Where records live; when empty, a FileSystemStore at base_path with `ttl` and `format`.
  std::shared_ptr<Store> store{};
  Target backend = Target::process;
  // The default store's directory; when empty, <temporary directory>/strand-computations.
  std::filesystem::path base_path{};
  std::optional<std::chrono::seconds> ttl = std::chrono::hours(1);
  Format format = Format::json;
  std::vector<std::shared_ptr<Middleware>> middleware{};
  // How records, logs and `strand jobs ls` name the function.
  std::string name = "computation";
  ThreadPool* pool = nullptr;  // the pool backend's pool; default_pool() when null
  ProcessOptions process{};    // the process backend's options
};

namespace detail {

// What every computation of one async_compute function shares.
struct ComputeShared {
  std::shared_ptr<Store> store;
  std::vector<std::shared_ptr<Middleware>> middleware;
  std::string name;
  Target backend;
  ThreadPool* pool;
  ProcessOptions process;
  bool store_crosses_processes;  // a child can write the record itself
};

std::shared_ptr<const ComputeShared> make_compute_shared(ComputeOptions options);

// Runs `before` hooks; the Rejected error that refuses the computation, or null.
std::exception_ptr run_before_hooks(const ComputeShared& shared, const ComputationInfo& info);
// The record a new computation starts with; written by the caller.
Record launch_record(const ComputeShared& shared, const std::string& key);
// Writes the outcome unless the record is already terminal (cancelled meanwhile); false then.
bool record_success(Store& store, const std::string& key, const nlohmann::json& value);
bool record_failure(Store& store, const std::string& key, const ErrorInfo& error);
void run_after_hooks(const ComputeShared& shared, ComputationInfo info,
                     std::chrono::steady_clock::time_point started, const nlohmann::json& value);
void run_error_hooks(const ComputeShared& shared, ComputationInfo info,
                     std::chrono::steady_clock::time_point started, const ErrorInfo& error);
// In a forked child: a store of its own on the same location (a connection is not fork-safe).
std::shared_ptr<Store> reopen_in_child(const Store& store);

template <class F, class... A>
using compute_result_t = submit_result_t<const F, A...>;

}  // namespace detail

template <class F>
class AsyncComputation {
 public:
  AsyncComputation(F f, ComputeOptions options)
      : f_(std::make_shared<const F>(std::move(f))),
        shared_(detail::make_compute_shared(std::move(options))) {}

  // Launches f(args...) as a computation and returns its handle at once. The arguments are copied
  // into the computation (as std::thread does).
  template <class... Args>
  auto operator()(Args&&... args) const {
    using R = detail::compute_result_t<F, std::decay_t<Args>...>;
    static_assert(std::is_void_v<R> || Serializable<R>,
                  "strand: an async_compute function's result is kept in a store, so its type "
                  "must be serializable (nlohmann to_json/from_json; see strand/serialize.hpp)");
    const auto& shared = *shared_;
    const std::string key = shared.store->create_key();
    ComputationInfo info{key, shared.name, shared.backend, {}};
    if (auto rejected = detail::run_before_hooks(shared, info)) {
      Record r = detail::launch_record(shared, key);
      r.status = Status::failed;
      r.error = error_info(rejected);
      r.completed = std::chrono::system_clock::now();
      shared.store->set(std::move(r));
      detail::run_error_hooks(shared, info, std::chrono::steady_clock::now(), *r.error);
      // In this process the refusal rethrows as itself (RateLimited, ...), like any failure.
      Promise<void> refused;
      refused.set_exception(rejected);
      return ComputationHandle<R>(key, shared.store, refused.handle(), {});
    }
    shared.store->set(detail::launch_record(shared, key));
    if (shared.backend == Target::process) {
      Handle<nlohmann::json> work =
          launch_process<R>(key, std::decay_t<Args>(std::forward<Args>(args))...);
      // The handle to wait on finishes with the work; cancel() goes to the work itself.
      return ComputationHandle<R>(key, shared.store, work.then([](const nlohmann::json&) {}),
                                  [work]() mutable { return work.cancel(); });
    }
    Handle<void> work = launch_here<R>(key, std::decay_t<Args>(std::forward<Args>(args))...);
    return ComputationHandle<R>(key, shared.store, work,
                                [work]() mutable { return work.cancel(); });
  }

  // Removes the store's expired records; returns how many.
  std::size_t cleanup_expired() const { return shared_->store->cleanup_expired(); }
  [[nodiscard]] const std::shared_ptr<Store>& store() const noexcept { return shared_->store; }
  [[nodiscard]] Target backend() const noexcept { return shared_->backend; }
  [[nodiscard]] const std::string& name() const noexcept { return shared_->name; }

 private:
  // thread, pool, sync: the function, the record and the hooks, all on the worker.
  template <class R, class... A>
  Handle<void> launch_here(const std::string& key, A... args) const {
    auto body = [f = f_, shared = shared_, key, ... a = std::move(args)](std::stop_token token) {
      const auto started = std::chrono::steady_clock::now();
      const ComputationInfo info{key, shared->name, shared->backend, {}};
      nlohmann::json value;
      try {
        detail::ComputationScope scope(*shared->store, key);
        if constexpr (std::is_void_v<R>) {
          detail::invoke_maybe_stoppable(*f, token, a...);
        } else {
          value = to_document(detail::invoke_maybe_stoppable(*f, token, a...));
        }
      } catch (...) {
        const auto error = std::current_exception();
        const ErrorInfo e = error_info(error);
        if (detail::record_failure(*shared->store, key, e)) {
          detail::run_error_hooks(*shared, info, started, e);
        }
        std::rethrow_exception(error);  // the in-process handle keeps the very exception
      }
      if (detail::record_success(*shared->store, key, value)) {
        detail::run_after_hooks(*shared, info, started, value);
      }
    };
    switch (shared_->backend) {
      case Target::pool:
        return PoolTaskrunner(std::move(body),
                              use_pool(shared_->pool ? *shared_->pool : default_pool()))();
      case Target::sync:
        return Taskrunner(std::move(body))();
      default:
        return ThreadTaskrunner(std::move(body))();
    }
  }

  // process: the child runs the function (and writes the record when it can reach the store);
  // the parent writes what the child could not, and runs the hooks.
  template <class R, class... A>
  Handle<nlohmann::json> launch_process(const std::string& key, A... args) const {
    const auto started = std::chrono::steady_clock::now();
    auto child = [f = f_, shared = shared_, key](std::stop_token token, const A&... a) {
      std::shared_ptr<Store> store =
          shared->store_crosses_processes ? detail::reopen_in_child(*shared->store) : nullptr;
      std::optional<detail::ComputationScope> scope;
      if (store) scope.emplace(*store, key);
      nlohmann::json value;
      try {
        if constexpr (std::is_void_v<R>) {
          detail::invoke_maybe_stoppable(*f, token, a...);
        } else {
          value = to_document(detail::invoke_maybe_stoppable(*f, token, a...));
        }
      } catch (...) {
        if (store) detail::record_failure(*store, key, error_info(std::current_exception()));
        throw;  // crosses to the parent as (type, message) for the hooks and the local handle
      }
      if (store) detail::record_success(*store, key, value);
      return value;
    };
    const ComputationInfo info{key, shared_->name, shared_->backend, {}};
    auto on_end = [shared = shared_, key, info, started](const nlohmann::json& value) {
      if (shared->store_crosses_processes || detail::record_success(*shared->store, key, value)) {
        detail::run_after_hooks(*shared, info, started, value);
      }
    };
    auto on_fail = [shared = shared_, key, info, started](std::exception_ptr error) {
      const ErrorInfo e = error_info(error);
      // A crash or a timeout never reached the store from the child: the parent records it. If the
      // child did record its own failure, this finds the record terminal and leaves it.
      (void)detail::record_failure(*shared->store, key, e);
      detail::run_error_hooks(*shared, info, started, e);
    };
    auto runner = ProcessTaskrunner(std::move(child), strand::on_end(std::move(on_end)),
                                    strand::on_error(std::move(on_fail)), shared_->process);
    return runner(std::move(args)...);
  }

  std::shared_ptr<const F> f_;
  std::shared_ptr<const detail::ComputeShared> shared_;
};

// Makes f an async computation (the seed's @async_compute(...)).
template <class F>
[[nodiscard]] AsyncComputation<F> async_compute(F f, ComputeOptions options = {}) {
  return AsyncComputation<F>(std::move(f), std::move(options));
}

// A scope with its own store in a fresh temporary directory, removed (with every record) when the
// scope ends (the seed's `with temporary_async_compute(...) as async_func`).
//
//   {
//     auto temp = strand::temporary_async_compute({.ttl = 60s});
//     auto quick_job = temp([](int x) { return x * x; });
//     quick_job(10).get_result(5s);
//   }  // directory removed
class TemporaryCompute {
 public:
  explicit TemporaryCompute(ComputeOptions options);
  ~TemporaryCompute();
  TemporaryCompute(const TemporaryCompute&) = delete;
  TemporaryCompute& operator=(const TemporaryCompute&) = delete;

  template <class F>
  [[nodiscard]] AsyncComputation<F> operator()(F f) const {
    return AsyncComputation<F>(std::move(f), options_);
  }
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
  [[nodiscard]] const std::shared_ptr<Store>& store() const noexcept { return options_.store; }

 private:
  std::filesystem::path path_;
  ComputeOptions options_;
};

[[nodiscard]] inline TemporaryCompute temporary_async_compute(ComputeOptions options = {}) {
  return TemporaryCompute(std::move(options));
}

}  // namespace strand
