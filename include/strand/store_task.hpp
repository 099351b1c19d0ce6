// strand/store_task.hpp — calls written into a store as jobs, and read back out by workers (the
// seed's StoreTaskWriter and StoreTaskReader).
//
//   auto store = strand::open_store("sqlite:///var/lib/app/jobs.db");
//   strand::StoreTaskWriter<int> add(store, "add", {.max_retries = 3});
//   strand::ComputationHandle<int> sum = add(2, 3);   // written; returns at once
//   sum.get_result(30s);                              // 5, once a worker has run it
//
//   auto resize = strand::as_task("store", store, "resize");  // the same, by target name
//
//   strand::StoreTaskReader reader(store, registry);   // elsewhere: the functions by name
//   reader.listen();                                   // runs jobs on a background thread
//   reader.stop();
//
// A writer holds no function, only its name: the call travels as the name and its arguments, each
// encoded as a document (so each must be serializable). The reader decodes them into the
// registered function's parameter types (strand/registry.hpp). The handle is a ComputationHandle:
// another process can re-attach to the job by its key, and cancel() cancels the job.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <ranges>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "strand/computation.hpp"
#include "strand/job_queue.hpp"
#include "strand/registry.hpp"
#include "strand/serialize.hpp"
#include "strand/store.hpp"
#include "strand/worker.hpp"

namespace strand {

template <class R = nlohmann::json>
class StoreTaskWriter {
  static_assert(std::is_void_v<R> || Serializable<R>,
                "strand: a store task's result is read back from the store, so its type must be "
                "serializable (nlohmann to_json/from_json; see strand/serialize.hpp)");

 public:
  // NoJobQueue if `store` has no job queue; std::invalid_argument for an empty function name.
  StoreTaskWriter(std::shared_ptr<Store> store, std::string function, JobOptions options = {})
      : store_(std::move(store)),
        queue_(job_queue(store_)),
        function_(std::move(function)),
        options_(std::move(options)) {
    if (function_.empty())
      throw std::invalid_argument("strand: a store task needs a function name");
  }

  // Writes the call function(args...) as a job and returns its handle.
  template <class... Args>
  ComputationHandle<R> operator()(const Args&... args) const {
    static_assert((writable<Args> && ...),
                  "strand: a store task's arguments are written into the store, so each must be "
                  "serializable (nlohmann to_json/from_json; see strand/serialize.hpp)");
    return ComputationHandle<R>(queue_->enqueue(request(arguments(args...))), store_);
  }

  // Writes one job per element of `calls` in one transaction (or round trip): an element is a
  // std::tuple of arguments, or a single argument.
  template <std::ranges::input_range Calls>
  std::vector<ComputationHandle<R>> map(const Calls& calls) const {
    std::vector<JobRequest> requests;
    for (const auto& call : calls) {
      using E = std::remove_cvref_t<decltype(call)>;
      if constexpr (is_tuple<E>::value) {
        requests.push_back(
            request(std::apply([](const auto&... a) { return arguments(a...); }, call)));
      } else {
        requests.push_back(request(arguments(call)));
      }
    }
    std::vector<ComputationHandle<R>> handles;
    for (std::string& id : queue_->enqueue_many(requests))
      handles.emplace_back(std::move(id), store_);
    return handles;
  }

  // The same writer with other options (another queue, a priority, a delay...).
  [[nodiscard]] StoreTaskWriter with(JobOptions options) const {
    return StoreTaskWriter(store_, function_, std::move(options));
  }

  [[nodiscard]] const std::string& function() const noexcept { return function_; }
  [[nodiscard]] const JobOptions& options() const noexcept { return options_; }
  [[nodiscard]] const std::shared_ptr<Store>& store() const noexcept { return store_; }

 private:
  template <class T>
  struct is_tuple : std::false_type {};
  template <class... T>
  struct is_tuple<std::tuple<T...>> : std::true_type {};

  // An argument the job can carry: a serializable value, or text (a string literal goes as a
  // std::string).
  template <class A>
  static constexpr bool writable =
      Serializable<A> || std::is_convertible_v<const A&, std::string_view>;

  template <class A>
  static nlohmann::json document(const A& arg) {
    if constexpr (Serializable<A>) {
      return to_document(arg);
    } else {
      return std::string(std::string_view(arg));
    }
  }

  template <class... Args>
  static nlohmann::json arguments(const Args&... args) {
    nlohmann::json out = nlohmann::json::array();
    (out.push_back(document(args)), ...);
    return out;
  }

  JobRequest request(nlohmann::json args) const {
    return JobRequest{.function = function_, .args = std::move(args), .options = options_};
  }

  std::shared_ptr<Store> store_;
  std::shared_ptr<JobQueue> queue_;
  std::string function_;
  JobOptions options_;
};

StoreTaskWriter(std::shared_ptr<Store>, std::string)->StoreTaskWriter<nlohmann::json>;
StoreTaskWriter(std::shared_ptr<Store>, std::string, JobOptions)->StoreTaskWriter<nlohmann::json>;

// as_task("store", store, "name"): a StoreTaskWriter, as the seed's 'store' target.
// std::invalid_argument if `target` is not "store".
// (A template in every parameter, so that it is more specialized than as_task(target, f,
// parts...).)
template <class R = nlohmann::json, class S, std::convertible_to<std::string> Name>
requires std::derived_from<S, Store>
[[nodiscard]] StoreTaskWriter<R> as_task(std::string_view target, std::shared_ptr<S> store,
                                         Name function, JobOptions options = {}) {
  if (target != "store") {
    throw std::invalid_argument(
        "strand: a store and a function name make a \"store\" task, not a "
        "\"" +
        std::string(target) + "\" task");
  }
  return StoreTaskWriter<R>(std::move(store), std::string(std::move(function)), std::move(options));
}

// Runs the jobs of a store with the functions of a registry, on a background Worker.
class StoreTaskReader {
 public:
  StoreTaskReader(std::shared_ptr<Store> store, Registry registry, WorkerOptions options = {})
      : store_(std::move(store)), registry_(std::move(registry)), options_(std::move(options)) {
    (void)job_queue(store_);  // NoJobQueue now rather than at listen()
  }

  // Starts running jobs in the background (again after stop()); does nothing if listening.
  void listen() {
    if (!worker_) worker_.emplace(store_, registry_, options_);
  }
  // Stops as Worker::stop does; returns once the background threads have ended.
  void stop() { worker_.reset(); }
  [[nodiscard]] bool listening() const noexcept { return worker_.has_value(); }
  // The worker while listening (for its stats), else null.
  [[nodiscard]] const Worker* worker() const noexcept { return worker_ ? &*worker_ : nullptr; }

 private:
  std::shared_ptr<Store> store_;
  Registry registry_;
  WorkerOptions options_;
  std::optional<Worker> worker_;
};

}  // namespace strand
