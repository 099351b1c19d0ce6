// The job queue in an SQLite file, by hand (strand::Worker does this loop for you): enqueue with
// options, claim a batch with a lease, complete, fail and retry, and read the results back.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "strand/computation.hpp"
#include "strand/sqlite_store.hpp"

using namespace std::chrono_literals;

int main() {
  const auto path = std::filesystem::temp_directory_path() /
                    ("strand-sqlite-jobs-" + std::to_string(::getpid()) + ".db");
  {
    auto store = strand::SqliteStore::open(path);

    // Enqueue: one transaction for the batch; the idempotency key makes a second enqueue a no-op.
    std::vector<strand::JobRequest> batch;
    for (int i = 1; i <= 3; ++i) batch.push_back({.function = "square", .args = {i}});
    batch.push_back({.function = "square", .args = {10}, .options = {.priority = 5}});
    const auto ids = store->enqueue_many(batch);
    const std::string flaky =
        store->enqueue({.function = "flaky", .options = {.max_retries = 1, .retry_backoff = 10ms}});
    const std::string once = store->enqueue(
        {.function = "square", .args = {7}, .options = {.idempotency_key = "seven"}});
    const std::string again = store->enqueue(
        {.function = "square", .args = {8}, .options = {.idempotency_key = "seven"}});
    std::printf("idempotent: %s\n", once == again ? "same job" : "two jobs");

    // A worker's loop: claim up to 16 with a 30 s lease (on SQLite's clock), run, complete or fail.
    const std::vector<std::string> queues{"default"};
    int done = 0;
    bool flaky_failed_once = false;
    std::string first;
    while (done < 6) {
      auto leases = store->claim(queues, "worker-1", 30s, 16);
      if (leases.empty()) {
        store->wait_for_jobs(queues, strand::JobQueue::clock::now() + 1s, {});
        continue;
      }
      for (const strand::Lease& lease : leases) {
        const strand::Job& job = *lease.record.job;
        if (job.function == "flaky" && !flaky_failed_once) {
          flaky_failed_once = true;  // the first attempt fails; the retry comes after the backoff
          store->fail(lease.id, lease.token, {"std::runtime_error", "not yet"});
          continue;
        }
        const int x = job.args.empty() ? 0 : job.args[0].get<int>();
        if (first.empty()) {
          first = job.function + "(" + std::to_string(x) + "), priority " +
                  std::to_string(job.priority);
        }
        store->complete(lease.id, lease.token, x * x);
        ++done;
      }
    }

    std::printf("first claimed: %s\n", first.c_str());

    // Results, read back like any computation's.
    std::printf("results:");
    for (const auto& id : ids) {
      std::printf(" %d", strand::ComputationHandle<int>(id, store).get_result(1s));
    }
    std::printf("\nseven: %d\n", strand::ComputationHandle<int>(once, store).get_result(1s));
    const strand::Record f = store->get(flaky);
    std::printf("flaky: %s on attempt %zu after %d failure(s)\n",
                std::string(strand::to_string(f.status)).c_str(), f.job->history.size(),
                f.job->failures);
  }
  std::filesystem::remove(path);
  std::filesystem::remove(path.string() + "-wal");
  std::filesystem::remove(path.string() + "-shm");
}
