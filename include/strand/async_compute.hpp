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
// Backends: `thread` (a thread of its own per computation, reused once idle), `pool` (a
// ThreadPool), `process` (a forked child, which writes its result into the store itself when the
// store is shared across processes; the parent writes it otherwise), and `sync`. Whatever the
// backend, the record is written before the handle's in-process wait wakes, and middleware hooks
// run in the launching process.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <filesystem>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <ranges>
#include <span>
#include <stop_token>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "strand/callbacks.hpp"
#include "strand/computation.hpp"
#include "strand/detail/own_thread.hpp"
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

struct ComputeShared;

// A computation run in this process (thread, pool, sync) that has returned or thrown, waiting for
// its outcome to be recorded.
struct FinishedComputation {
  std::string key;
  nlohmann::json value;      // the result, when it returned
  std::exception_ptr error;  // what it threw, when it failed
  std::chrono::steady_clock::time_point started;
  Promise<void> done;  // the in-process handle's side: completed once the record is written
};

// Records finished computations. On a store whose writes are cheaper together
// (Store::groups_writes: SQLite) it groups them (group commit): a computation that finishes queues
// its outcome, and if no thread is recording, it records all that is queued with one
// Store::write_many, again and again until nothing is queued. Computations that finish while a
// write is under way share the next one, and no thread waits for another's write. Launches join
// the group too: the launching thread queues its records and returns once they are written, by
// itself or by the thread recording then, in the same commit as the outcomes queued meanwhile.
// On other stores each thread writes its own outcome, at once. Either way a handle completes
// after its record is written and its middleware hooks have run.
class OutcomeRecorder {
 public:
  // Writes new computations' records (stamped in place, as Store::set returns them); returns once
  // they are written, or throws the store's error.
  void launch(const ComputeShared& shared, std::span<Record> records);
  void finish(const ComputeShared& shared, FinishedComputation finished);

 private:
  struct Launch {
    std::span<Record> records;
    bool written = false;
    std::exception_ptr error;
  };
  // Records what is queued until nothing is; the caller set recording_.
  void drain(const ComputeShared& shared);
  void record(const ComputeShared& shared, std::span<Launch* const> launches,
              std::span<FinishedComputation> batch);

  std::mutex mutex_;
  std::condition_variable launch_written_;
  std::vector<Launch*> launches_;  // each waited for by its launching thread
  std::vector<FinishedComputation> queued_;
  bool recording_ = false;  // a thread is in drain(): it will take what is queued
};

// What every computation of one async_compute function shares.
struct ComputeShared {
  std::shared_ptr<Store> store;
  std::vector<std::shared_ptr<Middleware>> middleware;
  std::string name;
  Target backend;
  ThreadPool* pool;
  ProcessOptions process;
  bool store_crosses_processes;      // a child can write the record itself
  mutable OutcomeRecorder recorder;  // for the thread, pool and sync backends
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

// How AsyncComputation::map calls f with an element E: spread if E is a tuple (or pair).
template <class T>
struct is_tuple : std::false_type {};
template <class... T>
struct is_tuple<std::tuple<T...>> : std::true_type {};
template <class A, class B>
struct is_tuple<std::pair<A, B>> : std::true_type {};

template <class F, class E, bool = is_tuple<E>::value>
struct MapCall {
  static constexpr bool spread = false;
  using result = compute_result_t<F, E>;
};
template <class F, class... T>
struct MapCall<F, std::tuple<T...>, true> {
  static constexpr bool spread = true;
  using result = compute_result_t<F, T...>;
};
template <class F, class A, class B>
struct MapCall<F, std::pair<A, B>, true> {
  static constexpr bool spread = true;
  using result = compute_result_t<F, A, B>;
};

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
    check_result<R>();
    const std::string key = shared_->store->create_key();
    if (auto refused = refuse_if_rejected<R>(key)) return std::move(*refused);
    Record launched = detail::launch_record(*shared_, key);
    shared_->recorder.launch(*shared_, std::span(&launched, 1));
    return start<R>(key, std::decay_t<Args>(std::forward<Args>(args))...);
  }

  // Launches one computation per element of `calls` and returns their handles in order: f(e) for
  // an element e, or f(a, b, ...) for an element that is a std::tuple (or pair) of them. Their
  // records are written together (one transaction on SQLite), not one by one.
  //
  //   std::vector<strand::ComputationHandle<long>> handles = square.map(std::vector{1, 2, 3});
  //   std::vector<long> squares = strand::get_results(handles, 30s);
  template <std::ranges::forward_range Calls>
  auto map(Calls&& calls) const {
    using E = std::ranges::range_value_t<Calls>;
    using R = typename detail::MapCall<F, E>::result;
    check_result<R>();
    std::vector<std::optional<ComputationHandle<R>>> refused;
    std::vector<std::string> keys;
    std::vector<Record> launched;
    for ([[maybe_unused]] auto&& call : calls) {
      keys.push_back(shared_->store->create_key());
      refused.push_back(refuse_if_rejected<R>(keys.back()));
      if (!refused.back()) launched.push_back(detail::launch_record(*shared_, keys.back()));
    }
    shared_->recorder.launch(*shared_, launched);
    std::vector<ComputationHandle<R>> handles;
    handles.reserve(keys.size());
    std::size_t i = 0;
    for (auto&& call : calls) {
      if (refused[i]) {
        handles.push_back(std::move(*refused[i]));
      } else if constexpr (detail::MapCall<F, E>::spread) {
        handles.push_back(std::apply(
            [&](const auto&... a) { return start<R>(keys[i], std::decay_t<decltype(a)>(a)...); },
            call));
      } else {
        handles.push_back(start<R>(keys[i], E(call)));
      }
      ++i;
    }
    return handles;
  }

  // Removes the store's expired records; returns how many.
  std::size_t cleanup_expired() const { return shared_->store->cleanup_expired(); }
  [[nodiscard]] const std::shared_ptr<Store>& store() const noexcept { return shared_->store; }
  [[nodiscard]] Target backend() const noexcept { return shared_->backend; }
  [[nodiscard]] const std::string& name() const noexcept { return shared_->name; }

 private:
  template <class R>
  static constexpr void check_result() {
    static_assert(std::is_void_v<R> || Serializable<R>,
                  "strand: an async_compute function's result is kept in a store, so its type "
                  "must be serializable (nlohmann to_json/from_json; see strand/serialize.hpp)");
  }

  // Runs the before hooks; if one refuses the computation, records it failed and returns its
  // handle, which in this process rethrows the refusal as itself (RateLimited, ...).
  template <class R>
  std::optional<ComputationHandle<R>> refuse_if_rejected(const std::string& key) const {
    const auto& shared = *shared_;
    ComputationInfo info{key, shared.name, shared.backend, {}};
    auto rejected = detail::run_before_hooks(shared, info);
    if (!rejected) return std::nullopt;
    Record r = detail::launch_record(shared, key);
    r.status = Status::failed;
    r.error = error_info(rejected);
    r.completed = std::chrono::system_clock::now();
    shared.store->set(r);
    detail::run_error_hooks(shared, info, std::chrono::steady_clock::now(), *r.error);
    Promise<void> refused;
    refused.set_exception(rejected);
    return ComputationHandle<R>(key, shared.store, refused.handle(), {});
  }

  // Starts the computation whose record is written.
  template <class R, class... A>
  ComputationHandle<R> start(const std::string& key, A... args) const {
    if (shared_->backend == Target::process) {
      Handle<nlohmann::json> work = launch_process<R>(key, std::move(args)...);
      // The handle to wait on finishes with the work; cancel() goes to the work itself.
      return ComputationHandle<R>(key, shared_->store, work.then([](const nlohmann::json&) {}),
                                  [work]() mutable { return work.cancel(); });
    }
    Handle<void> local = launch_here<R>(key, std::move(args)...);
    return ComputationHandle<R>(key, shared_->store, local,
                                [local]() mutable { return local.cancel(); });
  }

  // thread, pool, sync: the function runs on the worker, then its outcome goes to the recorder,
  // which writes the record, runs the hooks and completes the in-process handle. Cancelling that
  // handle requests the stop token the function may take, or keeps it from starting.
  template <class R, class... A>
  Handle<void> launch_here(const std::string& key, A... args) const {
    Promise<void> done(Status::queued);
    Handle<void> local = done.handle();
    auto body = [f = f_, shared = shared_, key, done = std::move(done),
                 ... a = std::move(args)]() mutable {
      if (!done.set_running()) return;  // cancelled before it started
      detail::FinishedComputation finished{
          key, {}, nullptr, std::chrono::steady_clock::now(), std::move(done)};
      try {
        detail::ComputationScope scope(*shared->store, key);
        const std::stop_token token = finished.done.stop_token();
        if constexpr (std::is_void_v<R>) {
          detail::invoke_maybe_stoppable(*f, token, a...);
        } else {
          finished.value = to_document(detail::invoke_maybe_stoppable(*f, token, a...));
        }
      } catch (...) {
        finished.error = std::current_exception();  // the in-process handle keeps the very one
      }
      shared->recorder.finish(*shared, std::move(finished));
    };
    switch (shared_->backend) {
      case Target::pool:
        (shared_->pool ? *shared_->pool : default_pool()).post(std::move(body));
        break;
      case Target::sync:
        body();
        break;
      default:  // a thread of its own (reused once an earlier call's returned)
        detail::run_on_own_thread([body = std::move(body)]() mutable noexcept { body(); });
    }
    return local;
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
