// The JobQueue contract, run against every store that has one (a fresh store per test): enqueue
// with its options, claim order, leases and fencing tokens, retries with backoff, release, cancel,
// waiting for jobs, and many threads claiming at once.
#include "strand/job_queue.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "redis_support.hpp"
#include "store_support.hpp"
#include "strand/computation.hpp"
#include "strand/filesystem_store.hpp"
#include "strand/memory_store.hpp"
#include "strand/redis_store.hpp"
#include "strand/sqlite_store.hpp"

namespace {

using namespace std::chrono_literals;
using strand::JobRequest;
using strand::Lease;
using strand::LeaseState;
using strand::Record;
using strand::Status;

class JobQueueTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const std::string& kind = GetParam();
    if (kind == "memory") {
      store_ = strand::MemoryStore::open();
    } else if (kind == "filesystem") {
      store_ = strand::FileSystemStore::open(dir_.path() / "jobs");
    } else if (kind == "sqlite") {
      store_ = strand::SqliteStore::open(dir_.path() / "jobs.db");
    } else if (kind == "redis") {
      // A prefix of its own: tests that share the server in one process see nothing of each other.
      static int opened = 0;
      store_ = strand::RedisStore::open(
          "127.0.0.1", strand::testing::shared_redis().port(), 0, {},
          {.prefix = "jq" + std::to_string(::getpid()) + "-" + std::to_string(++opened) + ":"});
    }
    ASSERT_TRUE(store_) << "no store of kind " << kind;
    queue_ = strand::job_queue(store_);
  }

  // Claims one job of "default" or fails the test.
  Lease claim_one(std::string_view worker = "w1", std::chrono::milliseconds lease = 30s) {
    auto leases = queue_->claim(default_queue_, worker, lease, 1);
    EXPECT_EQ(leases.size(), 1u);
    if (leases.empty()) throw std::runtime_error("nothing to claim");
    return std::move(leases.front());
  }

  // Claims one job, waiting for it (by wait_for_jobs) up to `limit`.
  std::optional<Lease> claim_waiting(std::string_view worker, std::chrono::milliseconds lease,
                                     std::chrono::milliseconds limit = 5s) {
    const auto deadline = strand::JobQueue::clock::now() + limit;
    for (;;) {
      auto leases = queue_->claim(default_queue_, worker, lease, 1);
      if (!leases.empty()) return std::move(leases.front());
      if (strand::JobQueue::clock::now() >= deadline) return std::nullopt;
      queue_->wait_for_jobs(default_queue_, deadline, {});
    }
  }

  strand::testing::TempDir dir_;
  std::shared_ptr<strand::Store> store_;
  std::shared_ptr<strand::JobQueue> queue_;
  std::vector<std::string> default_queue_{"default"};
};

TEST_P(JobQueueTest, EnqueuedJobIsQueuedWithItsCall) {
  const std::string id = queue_->enqueue({.function = "add", .args = {1, 2}});
  const Record r = store_->get(id);
  EXPECT_EQ(r.status, Status::queued);
  ASSERT_TRUE(r.job);
  EXPECT_EQ(r.job->function, "add");
  EXPECT_EQ(r.job->args, nlohmann::json({1, 2}));
  EXPECT_EQ(r.job->queue, "default");
  EXPECT_EQ(r.job->token, 0u);
}

TEST_P(JobQueueTest, ClaimTakesHighestPriorityFirstThenOldest) {
  const auto now = queue_->now();
  const std::string low = queue_->enqueue({.function = "f", .options = {.start_at = now - 3s}});
  const std::string high_late =
      queue_->enqueue({.function = "f", .options = {.start_at = now - 1s, .priority = 5}});
  const std::string high_early =
      queue_->enqueue({.function = "f", .options = {.start_at = now - 2s, .priority = 5}});
  const auto leases = queue_->claim(default_queue_, "w1", 30s, 10);
  ASSERT_EQ(leases.size(), 3u);
  EXPECT_EQ(leases[0].id, high_early);
  EXPECT_EQ(leases[1].id, high_late);
  EXPECT_EQ(leases[2].id, low);
  EXPECT_TRUE(queue_->claim(default_queue_, "w1", 30s, 10).empty());
}

TEST_P(JobQueueTest, ClaimGivesALeaseWithANewToken) {
  const std::string id = queue_->enqueue({.function = "f"});
  const Lease lease = claim_one("worker-a", 10s);
  EXPECT_EQ(lease.id, id);
  EXPECT_EQ(lease.token, 1u);
  EXPECT_EQ(lease.record.status, Status::running);
  ASSERT_TRUE(lease.record.job);
  EXPECT_EQ(lease.record.job->worker, "worker-a");
  EXPECT_GT(lease.expires, queue_->now() + 8s);
  const Record stored = store_->get(id);
  EXPECT_EQ(stored.status, Status::running);
  EXPECT_EQ(stored.job->token, 1u);
  ASSERT_EQ(stored.job->history.size(), 1u);
  EXPECT_EQ(stored.job->history[0].outcome, "running");
}

TEST_P(JobQueueTest, ClaimTakesOnlyFromTheNamedQueues) {
  queue_->enqueue({.function = "f", .options = {.queue = "emails"}});
  EXPECT_TRUE(queue_->claim(default_queue_, "w1", 30s, 10).empty());
  const std::vector<std::string> emails{"emails", "other"};
  EXPECT_EQ(queue_->claim(emails, "w1", 30s, 10).size(), 1u);
}

TEST_P(JobQueueTest, DelayedJobWaitsForItsTime) {
  const auto start = strand::JobQueue::clock::now();
  const std::string id = queue_->enqueue({.function = "f", .options = {.delay = 300ms}});
  EXPECT_TRUE(queue_->claim(default_queue_, "w1", 30s, 1).empty());
  const auto lease = claim_waiting("w1", 30s);
  ASSERT_TRUE(lease);
  EXPECT_EQ(lease->id, id);
  EXPECT_GE(strand::JobQueue::clock::now() - start, 290ms);
}

TEST_P(JobQueueTest, CompleteRecordsTheResultOnce) {
  const std::string id = queue_->enqueue({.function = "f"});
  const Lease lease = claim_one();
  EXPECT_TRUE(queue_->complete(id, lease.token, 42));
  EXPECT_FALSE(queue_->complete(id, lease.token, 43));
  const Record r = store_->get(id);
  EXPECT_EQ(r.status, Status::completed);
  EXPECT_EQ(r.value, 42);
  EXPECT_EQ(r.job->history.back().outcome, "completed");
  EXPECT_EQ(strand::ComputationHandle<int>(id, store_).get_result(1s), 42);
}

TEST_P(JobQueueTest, CompleteManyRecordsEachHeldJobAndRefusesTheRest) {
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(queue_->enqueue({.function = "f", .args = {i}}));
  const auto leases = queue_->claim(default_queue_, "w1", 30s, 4);
  ASSERT_EQ(leases.size(), 4u);
  // Changed behind the claim's back (cancelled through another store object where there is one):
  // its completion is refused, the others are recorded.
  const auto other =
      GetParam() == "memory" ? queue_ : strand::job_queue(strand::open_store(store_->url()));
  ASSERT_TRUE(other->cancel_job(leases[2].id));
  const nlohmann::json values[] = {10, 11, 12, 13};
  std::vector<strand::JobQueue::Completion> completions;
  for (std::size_t i = 0; i < 4; ++i) {
    // The last with a stale token: fenced off.
    const std::uint64_t token = i == 3 ? leases[i].token + 1 : leases[i].token;
    completions.push_back({leases[i].id, token, &values[i]});
  }
  EXPECT_EQ(queue_->complete_many(completions), (std::vector<bool>{true, true, false, false}));
  for (std::size_t i = 0; i < 2; ++i) {
    const Record r = store_->get(leases[i].id);
    EXPECT_EQ(r.status, Status::completed);
    EXPECT_EQ(r.value, values[i]);
    EXPECT_EQ(r.job->history.back().outcome, "completed");
  }
  EXPECT_EQ(store_->get(leases[2].id).status, Status::cancelled);
  EXPECT_EQ(store_->get(leases[3].id).status, Status::running);
  // Recorded once: a second time changes nothing.
  EXPECT_EQ(queue_->complete_many(std::span(completions).first(1)), std::vector<bool>{false});
  EXPECT_TRUE(queue_->complete_many({}).empty());
}

TEST_P(JobQueueTest, GetResultsReadsEveryResultInOrder) {
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(queue_->enqueue({.function = "f", .args = {i}}));
  std::vector<strand::ComputationHandle<int>> handles;
  for (const auto& id : ids) handles.emplace_back(id, store_);
  // Without a timeout it does not wait.
  EXPECT_THROW((void)strand::get_results(handles), strand::NotReady);
  std::thread worker([&] {
    // In reverse order, while get_results waits.
    auto leases = queue_->claim(default_queue_, "w1", 30s, 5);
    std::reverse(leases.begin(), leases.end());
    for (const Lease& l : leases) {
      queue_->complete(l.id, l.token, l.record.job->args[0].get<int>() * 10);
    }
  });
  EXPECT_EQ(strand::get_results(handles, 5s), (std::vector<int>{0, 10, 20, 30, 40}));
  worker.join();
  EXPECT_EQ(strand::get_results(handles), (std::vector<int>{0, 10, 20, 30, 40}));
  EXPECT_TRUE(strand::get_results(std::vector<strand::ComputationHandle<int>>{}).empty());
}

TEST_P(JobQueueTest, GetResultsThrowsTheFirstFailureInOrderAndTimesOut) {
  const std::string done = queue_->enqueue({.function = "f"});
  const std::string failed = queue_->enqueue({.function = "f"});
  const std::string waiting = queue_->enqueue({.function = "f", .options = {.delay = 1h}});
  auto leases = queue_->claim(default_queue_, "w1", 30s, 2);
  ASSERT_EQ(leases.size(), 2u);
  ASSERT_TRUE(queue_->complete(done, leases[0].id == done ? leases[0].token : leases[1].token, 1));
  ASSERT_TRUE(queue_->fail(failed, leases[0].id == failed ? leases[0].token : leases[1].token,
                           {"std::invalid_argument", "bad input"}, false));
  std::vector<strand::ComputationHandle<int>> handles;
  for (const auto& id : {done, failed, waiting}) handles.emplace_back(id, store_);
  try {
    (void)strand::get_results(handles, 50ms);
    FAIL() << "expected the failure";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "bad input");
  }
  handles.erase(handles.begin() + 1);
  try {
    (void)strand::get_results(handles, 50ms);
    FAIL() << "expected Timeout";
  } catch (const strand::Timeout& e) {
    EXPECT_STREQ(e.what(), "strand: timed out after 50ms waiting for a task");
  }
}

TEST_P(JobQueueTest, FindManyReadsEachKeyInOrder) {
  const std::string a = queue_->enqueue({.function = "f", .args = {1}});
  const std::string b = queue_->enqueue({.function = "f", .args = {2}});
  const std::vector<std::string> keys{b, "missing-key", a};
  const auto found = store_->find_many(keys);
  ASSERT_EQ(found.size(), 3u);
  ASSERT_TRUE(found[0] && found[2]);
  EXPECT_FALSE(found[1]);
  EXPECT_EQ(found[0]->key, b);
  EXPECT_EQ(found[0]->job->args, nlohmann::json({2}));
  EXPECT_EQ(found[2]->key, a);
  EXPECT_TRUE(store_->find_many({}).empty());
  const std::vector<std::string> bad{a, "no/slashes"};
  EXPECT_THROW((void)store_->find_many(bad), strand::InvalidKey);
}

TEST_P(JobQueueTest, ExpiredLeaseIsClaimedAgainAndTheFirstWorkerIsFencedOff) {
  const std::string id = queue_->enqueue({.function = "f"});
  const Lease first = claim_one("w1", 100ms);
  const auto second = claim_waiting("w2", 30s);  // once the first lease has expired
  ASSERT_TRUE(second);
  EXPECT_EQ(second->id, id);
  EXPECT_EQ(second->token, first.token + 1);

  EXPECT_EQ(queue_->heartbeat(id, first.token, 30s), LeaseState::lost);
  EXPECT_FALSE(queue_->complete(id, first.token, "late"));
  EXPECT_FALSE(queue_->fail(id, first.token, {"std::runtime_error", "late"}));
  EXPECT_FALSE(queue_->release(id, first.token));
  EXPECT_EQ(queue_->heartbeat(id, second->token, 30s), LeaseState::held);
  EXPECT_TRUE(queue_->complete(id, second->token, "second"));

  const Record r = store_->get(id);
  EXPECT_EQ(r.value, "second");
  ASSERT_EQ(r.job->history.size(), 2u);
  EXPECT_EQ(r.job->history[0].outcome, "lease expired");
  EXPECT_EQ(r.job->history[0].worker, "w1");
  EXPECT_EQ(r.job->history[1].outcome, "completed");
  EXPECT_EQ(r.job->history[1].worker, "w2");
}

TEST_P(JobQueueTest, HeartbeatKeepsTheLease) {
  const std::string id = queue_->enqueue({.function = "f"});
  const Lease lease = claim_one("w1", 200ms);
  // Heartbeats every 50 ms for 600 ms: the job is never claimable meanwhile.
  const auto end = strand::JobQueue::clock::now() + 600ms;
  while (strand::JobQueue::clock::now() < end) {
    ASSERT_EQ(queue_->heartbeat(id, lease.token, 200ms), LeaseState::held);
    EXPECT_TRUE(queue_->claim(default_queue_, "w2", 30s, 1).empty());
    std::this_thread::sleep_for(50ms);  // the heartbeat period itself, not a synchronisation
  }
  EXPECT_TRUE(queue_->complete(id, lease.token, nullptr));
}

TEST_P(JobQueueTest, FailureIsRetriedWithBackoffThenFailsWithItsHistory) {
  const std::string id =
      queue_->enqueue({.function = "f", .options = {.max_retries = 2, .retry_backoff = 100ms}});
  for (int attempt = 1; attempt <= 3; ++attempt) {
    const auto lease = claim_waiting("w1", 30s);
    ASSERT_TRUE(lease) << "attempt " << attempt;
    const auto failed_at = queue_->now();
    ASSERT_TRUE(
        queue_->fail(id, lease->token, {"std::runtime_error", "boom " + std::to_string(attempt)}));
    const Record r = store_->get(id);
    EXPECT_EQ(r.job->failures, attempt);
    if (attempt < 3) {
      EXPECT_EQ(r.status, Status::queued);
      // backoff * 2^(attempt-1), times [0.5, 1.5)
      const auto least = std::chrono::milliseconds(50 << (attempt - 1));
      EXPECT_GE(r.job->run_at - failed_at, least - 5ms) << "attempt " << attempt;
      EXPECT_TRUE(queue_->claim(default_queue_, "w1", 30s, 1).empty());
    } else {
      EXPECT_EQ(r.status, Status::failed);
      ASSERT_TRUE(r.error);
      EXPECT_EQ(r.error->message, "boom 3");
      ASSERT_EQ(r.job->history.size(), 3u);
      for (const auto& a : r.job->history) EXPECT_EQ(a.outcome, "failed");
      EXPECT_EQ(r.job->history[0].error->message, "boom 1");
    }
  }
  EXPECT_TRUE(queue_->claim(default_queue_, "w1", 30s, 1).empty());
}

TEST_P(JobQueueTest, NonRetryableFailureEndsAtOnce) {
  const std::string id = queue_->enqueue({.function = "f", .options = {.max_retries = 5}});
  const Lease lease = claim_one();
  EXPECT_TRUE(queue_->fail(id, lease.token, {"strand::UnknownFunction", "no f"}, false));
  EXPECT_EQ(store_->get(id).status, Status::failed);
}

TEST_P(JobQueueTest, ReleaseGivesTheJobBackWithoutAFailure) {
  const std::string id = queue_->enqueue({.function = "f", .options = {.max_retries = 0}});
  const Lease first = claim_one("w1");
  EXPECT_TRUE(queue_->release(id, first.token));
  const Lease second = claim_one("w2");
  EXPECT_EQ(second.token, first.token + 1);
  const Record r = store_->get(id);
  EXPECT_EQ(r.job->failures, 0);
  EXPECT_EQ(r.job->history[0].outcome, "released");
}

TEST_P(JobQueueTest, CancelledQueuedJobIsNeverClaimed) {
  const std::string id = queue_->enqueue({.function = "f"});
  EXPECT_TRUE(queue_->cancel_job(id));
  EXPECT_FALSE(queue_->cancel_job(id));
  EXPECT_EQ(store_->get(id).status, Status::cancelled);
  EXPECT_TRUE(queue_->claim(default_queue_, "w1", 30s, 1).empty());
  EXPECT_THROW((void)strand::ComputationHandle<int>(id, store_).get_result(1s), strand::Cancelled);
}

TEST_P(JobQueueTest, CancelledRunningJobIsToldAtItsHeartbeatAndItsResultDropped) {
  const std::string id = queue_->enqueue({.function = "f"});
  const Lease lease = claim_one();
  EXPECT_TRUE(queue_->cancel_job(id));
  EXPECT_EQ(queue_->heartbeat(id, lease.token, 30s), LeaseState::cancelled);
  EXPECT_FALSE(queue_->complete(id, lease.token, 1));
  const Record r = store_->get(id);
  EXPECT_EQ(r.status, Status::cancelled);
  EXPECT_EQ(r.job->history.back().outcome, "cancelled");
}

// A store may start complete from the record its claim wrote (no read); a change made since, by
// this store object or another one on the same place, must still decide.
TEST_P(JobQueueTest, CompleteDecidesOnTheRecordAsItIsNotAsItWasClaimed) {
  const std::string id = queue_->enqueue({.function = "f"});
  const Lease lease = claim_one();
  store_->update(id, [](std::optional<Record> r) {  // a progress report, say
    r->metadata["note"] = "written between the claim and the complete";
    return r;
  });
  EXPECT_TRUE(queue_->complete(id, lease.token, 1));
  const Record done = store_->get(id);
  EXPECT_EQ(done.value, 1);
  EXPECT_EQ(done.metadata["note"], "written between the claim and the complete");
  if (GetParam() == "memory") return;  // every "memory:" store is a new one
  const std::string other = queue_->enqueue({.function = "f"});
  const Lease held = claim_one();
  ASSERT_EQ(held.id, other);
  EXPECT_TRUE(strand::job_queue(strand::open_store(store_->url()))->cancel_job(other));
  EXPECT_FALSE(queue_->complete(other, held.token, 2));
  EXPECT_FALSE(queue_->fail(other, held.token, {"std::runtime_error", "late"}));
  EXPECT_EQ(store_->get(other).status, Status::cancelled);
}

TEST_P(JobQueueTest, IdempotencyKeyReturnsTheFirstJob) {
  const std::string first =
      queue_->enqueue({.function = "f", .args = {1}, .options = {.idempotency_key = "order-7"}});
  const std::string second =
      queue_->enqueue({.function = "f", .args = {2}, .options = {.idempotency_key = "order-7"}});
  EXPECT_EQ(first, second);
  EXPECT_EQ(first, "idem-order-7");
  EXPECT_EQ(store_->get(first).job->args, nlohmann::json({1}));
}

TEST_P(JobQueueTest, EnqueueManyKeepsOrderAndOptions) {
  std::vector<JobRequest> requests;
  for (int i = 0; i < 50; ++i) {
    requests.push_back({.function = "sq", .args = {i}, .options = {.priority = i % 3}});
  }
  const auto ids = queue_->enqueue_many(requests);
  ASSERT_EQ(ids.size(), 50u);
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), 50u);
  for (int i = 0; i < 50; ++i) {
    const Record r = store_->get(ids[static_cast<std::size_t>(i)]);
    EXPECT_EQ(r.job->args, nlohmann::json({i}));
    EXPECT_EQ(r.job->priority, i % 3);
  }
}

TEST_P(JobQueueTest, BadRequestsAreRejectedBeforeAnythingIsWritten) {
  try {
    (void)queue_->enqueue({.function = ""});
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "strand: a job needs a function name");
  }
  try {
    (void)queue_->enqueue({.function = "f", .args = {{"a", 1}}});
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(),
                 "strand: the arguments of job \"f\" must be a JSON array, one element per "
                 "argument");
  }
  std::vector<JobRequest> batch{{.function = "ok"},
                                {.function = "f", .options = {.idempotency_key = "a/b"}}};
  try {
    (void)queue_->enqueue_many(batch);
    FAIL() << "no exception";
  } catch (const strand::InvalidKey& e) {
    EXPECT_STREQ(e.what(), "strand: invalid store key \"a/b\": it contains a path separator");
  }
  EXPECT_EQ(store_->size(), 0u);
}

TEST_P(JobQueueTest, WaitForJobsWakesOnAnEnqueueFromAnotherThread) {
  std::thread producer([&] {
    std::this_thread::sleep_for(100ms);  // let the wait begin first (either order passes)
    queue_->enqueue({.function = "f"});
  });
  const auto lease = claim_waiting("w1", 30s, 5s);
  producer.join();
  EXPECT_TRUE(lease);
}

TEST_P(JobQueueTest, WaitForJobsReturnsWhenStopped) {
  std::stop_source stop;
  const auto start = strand::JobQueue::clock::now();
  std::thread stopper([&] {
    std::this_thread::sleep_for(100ms);
    stop.request_stop();
  });
  queue_->wait_for_jobs(default_queue_, start + 5s, stop.get_token());
  stopper.join();
  EXPECT_LT(strand::JobQueue::clock::now() - start, 3s);
}

TEST_P(JobQueueTest, ManyThreadsClaimEveryJobExactlyOnce) {
  constexpr int kJobs = 200;
  std::vector<JobRequest> requests(kJobs, JobRequest{.function = "f"});
  const auto ids = queue_->enqueue_many(requests);
  std::mutex mutex;
  std::map<std::string, int> claimed;
  std::vector<std::thread> workers;
  for (int w = 0; w < 4; ++w) {
    workers.emplace_back([&, w] {
      const std::string name = "w" + std::to_string(w);
      for (;;) {
        auto leases = queue_->claim(default_queue_, name, 30s, 4);
        if (leases.empty()) return;
        for (auto& lease : leases) {
          EXPECT_TRUE(queue_->complete(lease.id, lease.token, w));
          std::lock_guard lock(mutex);
          ++claimed[lease.id];
        }
      }
    });
  }
  for (auto& t : workers) t.join();
  EXPECT_EQ(claimed.size(), static_cast<std::size_t>(kJobs));
  for (const auto& [id, times] : claimed) EXPECT_EQ(times, 1) << id;
  for (const auto& id : ids) EXPECT_EQ(store_->get(id).status, Status::completed);
}

INSTANTIATE_TEST_SUITE_P(Stores, JobQueueTest,
                         ::testing::Values("memory", "filesystem", "sqlite", "redis"),
                         [](const auto& info) { return info.param; });

}  // namespace
