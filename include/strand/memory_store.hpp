// strand/memory_store.hpp — a store in this process's memory, with its job queue.
//
//   auto store = strand::MemoryStore::open({.ttl = 10min});
//   auto fn = strand::async_compute(f, {.store = store});
//
// The fastest store, for tests and for work that need not outlive the process: shared by every
// handle to it, gone at exit. Records are split in shards by key, each with its own mutex, so
// threads writing different records rarely wait for each other; waiters wake on a condition
// variable.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "strand/job_queue.hpp"
#include "strand/store.hpp"

namespace strand {

// Records in this process's memory: fast, shared by every Store handle to it, gone at exit.
class MemoryStore final : public Store, public JobQueue {
 public:
  using clock = Store::clock;  // the same steady clock as JobQueue::clock

  static std::shared_ptr<MemoryStore> open(StoreOptions options = {});
  explicit MemoryStore(StoreOptions options);
  ~MemoryStore() override;

  [[nodiscard]] Format format() const noexcept override { return options().format; }
  [[nodiscard]] std::string url() const override { return "memory:"; }
  [[nodiscard]] bool shared_across_processes() const noexcept override { return false; }
  [[nodiscard]] std::optional<Record> find(std::string_view key) override;
  Record set(Record record) override;
  std::optional<Record> update(std::string_view key, const UpdateFn& f) override;
  std::vector<bool> finish_many(std::span<const Outcome> outcomes) override;
  bool erase(std::string_view key) override;
  [[nodiscard]] std::vector<std::string> keys() override;
  [[nodiscard]] std::size_t size() override;
  std::size_t cleanup_expired() override;
  Record wait_terminal(std::string_view key, clock::time_point deadline) override;

  // The job queue (see strand/job_queue.hpp), on the system clock.
  [[nodiscard]] Record::time_point now() override;
  std::vector<std::string> enqueue_many(std::span<const JobRequest> requests) override;
  std::vector<Lease> claim(std::span<const std::string> queues, std::string_view worker,
                           std::chrono::milliseconds lease, std::size_t max = 1) override;
  LeaseState heartbeat(std::string_view id, std::uint64_t token,
                       std::chrono::milliseconds lease) override;
  bool complete(std::string_view id, std::uint64_t token, const nlohmann::json& value) override;
  bool fail(std::string_view id, std::uint64_t token, const ErrorInfo& error,
            bool retryable = true) override;
  bool release(std::string_view id, std::uint64_t token) override;
  bool cancel_job(std::string_view id) override;
  void wait_for_jobs(std::span<const std::string> queues, JobQueue::clock::time_point deadline,
                     std::stop_token stop) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace strand
