// strand/redis_store.hpp — a store in a Redis server, shared by every process and machine that
// reaches it.
//
//   auto store = strand::RedisStore::open("127.0.0.1", 6379, 0, {.ttl = 1h});
//   auto same = strand::open_store("redis://127.0.0.1:6379/0");   // port and db may be left out
//   store->set({.key = "report-7", .status = strand::Status::completed, .value = 42});
//   store->wait_terminal(key, deadline);   // woken by Redis pub/sub, not by polling
//
// Layout. Each record is one Redis hash `<prefix>r:<key>` (prefix "strand:" by default) with the
// fields
//
//   record    the whole Record in the store's Format (JSON or MessagePack)
//   status    "pending", "running", "completed", ... (readable with redis-cli)
//   version   1 on first write, +1 on each write (HINCRBY)
//   created   Unix time in ms of the first write (kept across writes)
//
// and `find` takes `version` and `created` from their fields, as the SQLite store takes them from
// its columns. `set` is one Lua script (one round trip): it bumps the version, keeps `created`,
// writes the record, sets the expiry and publishes a terminal status. `update` is optimistic:
// WATCH, HMGET, then your function, then MULTI/HSET/EXEC; when another client wrote the record in
// between, EXEC fails and the whole read-modify-write runs again. So **the UpdateFn may run more
// than once** (each time with the record as it is then); only its last result is written, and it
// must not have side effects that cannot be repeated.
//
// TTL is Redis's own expiry: with `StoreOptions::ttl` each write sets PEXPIREAT at `completed`
// (else `created`) + ttl, the same instant the other stores count from, and Redis removes the
// record by itself: `cleanup_expired()` has nothing to do and returns 0. `keys()` and `size()` walk
// the prefix with SCAN (never KEYS, which blocks the server).
//
// wait_terminal subscribes to the channel `<prefix>w:<key>` on a connection of its own, then reads
// the record (so a write between the two is not missed), then sleeps in poll() until a message or
// the deadline. Every write that leaves a record terminal publishes on its channel.
//
// Connections: one per store object, guarded by a mutex; a forked child opens its own on first use
// (a hiredis context must not cross a fork). A lost connection (Redis restarted, a network blip) is
// reopened with back-off (10 ms doubling to 1 s) for up to `RedisOptions::reconnect_timeout`, and
// the command is sent again; after that, a StoreError saying what failed. A server that cannot be
// reached when the store is opened is a StoreError at once ("strand: cannot reach Redis at
// 127.0.0.1:1: Connection refused"), after at most `connect_timeout`.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "strand/job_queue.hpp"
#include "strand/store.hpp"

namespace strand {

struct RedisOptions {
  // How long one attempt to connect may take.
  std::chrono::milliseconds connect_timeout{2'000};
  // How long a lost connection is retried (with back-off) before a command fails.
  std::chrono::milliseconds reconnect_timeout{30'000};
  // How long one command may wait for its reply before the connection counts as lost.
  std::chrono::milliseconds command_timeout{10'000};
  // Prepended to every Redis key and channel, so several stores can share one database.
  std::string prefix = "strand:";
};

class RedisStore final : public Store, public JobQueue {
 public:
  using clock = Store::clock;  // the same steady clock as JobQueue::clock

  // Connects to the Redis server at host:port and selects database `db`. Throws StoreError if the
  // server cannot be reached ("strand: cannot reach Redis at host:port: <why>"), refuses the
  // database number, or `redis` is invalid (an empty prefix, a port out of range).
  static std::shared_ptr<RedisStore> open(std::string host, int port = 6379, int db = 0,
                                          StoreOptions options = {}, RedisOptions redis = {});

  ~RedisStore() override;
  RedisStore(const RedisStore&) = delete;
  RedisStore& operator=(const RedisStore&) = delete;

  [[nodiscard]] const std::string& host() const noexcept;
  [[nodiscard]] int port() const noexcept;
  [[nodiscard]] int db() const noexcept;
  [[nodiscard]] const RedisOptions& redis_options() const noexcept;

  [[nodiscard]] Format format() const noexcept override { return options().format; }
  // "redis://host:port/db", with "?prefix=..." when the prefix is not the default.
  [[nodiscard]] std::string url() const override;
  [[nodiscard]] std::optional<Record> find(std::string_view key) override;
  // Every key in one round trip.
  [[nodiscard]] std::vector<std::optional<Record>> find_many(
      std::span<const std::string> keys) override;
  Record set(Record record) override;
  // Optimistic (WATCH/MULTI/EXEC): `f` may run more than once. See the top of this file.
  std::optional<Record> update(std::string_view key, const UpdateFn& f) override;
  bool erase(std::string_view key) override;
  [[nodiscard]] std::vector<std::string> keys() override;
  [[nodiscard]] std::size_t size() override;
  // Redis expires records by itself: always 0.
  std::size_t cleanup_expired() override;
  Record wait_terminal(std::string_view key, clock::time_point deadline) override;

  // The job queue (see strand/job_queue.hpp) on Redis's clock (TIME). Each queue has two sorted
  // sets beside the records: `<prefix>q:<queue>:ready` (queued jobs by run_at) and
  // `<prefix>q:<queue>:lease` (running jobs by lease expiry). Every change of a job is a
  // compare-and-set on the record's version, written by one Lua script together with the job's
  // indexes and notifications (so a change and its index never disagree), and a job's change costs
  // two round trips: read the record with TIME, then the script. A claim is one script that reads
  // TIME and the due members of both sets with their records (at most max + 2 per set), then one
  // compare-and-set per chosen job, all in one round trip: among the due jobs it reads, the highest
  // priority goes first. A worker that loses a job to another looks again. complete, fail and
  // release of a job this object claimed start from the record as it wrote it (one round trip; a
  // record changed meanwhile is read and decided again), timed by the server's clock as last seen.
  // Enqueues (any number, one round trip) and retries PUBLISH on `<prefix>jobs:<queue>`, which
  // wait_for_jobs subscribes to.
  [[nodiscard]] Record::time_point now() override;
  std::vector<std::string> enqueue_many(std::span<const JobRequest> requests) override;
  std::vector<Lease> claim(std::span<const std::string> queues, std::string_view worker,
                           std::chrono::milliseconds lease, std::size_t max = 1) override;
  LeaseState heartbeat(std::string_view id, std::uint64_t token,
                       std::chrono::milliseconds lease) override;
  bool complete(std::string_view id, std::uint64_t token, const nlohmann::json& value) override;
  std::vector<bool> complete_many(std::span<const Completion> completions) override;
  bool fail(std::string_view id, std::uint64_t token, const ErrorInfo& error,
            bool retryable = true) override;
  bool release(std::string_view id, std::uint64_t token) override;
  bool cancel_job(std::string_view id) override;
  void wait_for_jobs(std::span<const std::string> queues, JobQueue::clock::time_point deadline,
                     std::stop_token stop) override;

 private:
  struct Impl;
  struct JobWrite;
  RedisStore(StoreOptions options, std::unique_ptr<Impl> impl);
  std::vector<bool> write_jobs(std::span<const JobWrite> writes);
  template <class Change>
  bool change_job(std::string_view id, std::optional<std::uint64_t> held_token, Change&& change);
  std::unique_ptr<Impl> impl_;
};

}  // namespace strand
