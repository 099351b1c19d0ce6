// Worker: runs a store's jobs with a registry's functions; records results and failures once;
// retries with backoff; stops jobs that are cancelled, time out or lose their lease; shuts down
// gracefully. (Across processes, with crashes, on SQLite and Redis: tests/integration.)
#include "strand/worker.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "store_support.hpp"
#include "strand/computation.hpp"
#include "strand/filesystem_store.hpp"
#include "strand/memory_store.hpp"
#include "strand/store_task.hpp"
#include "support.hpp"

namespace {

using namespace std::chrono_literals;
using strand::Record;
using strand::Status;
using strand::testing::Gate;

// Waits (by the store's own wait) until the job is terminal; fails the test after 5 s.
Record finished(const std::shared_ptr<strand::Store>& store, const std::string& id) {
  Record r = store->wait_terminal(id, std::chrono::steady_clock::now() + 5s);
  EXPECT_TRUE(strand::is_terminal(r.status)) << "job " << id << " is " << to_string(r.status);
  return r;
}

class WorkerTest : public ::testing::Test {
 protected:
  std::shared_ptr<strand::Store> store_ = strand::MemoryStore::open();
  std::shared_ptr<strand::JobQueue> queue_ = strand::job_queue(store_);
  strand::Registry registry_;
};

TEST_F(WorkerTest, RunsJobsAndRecordsTheirResults) {
  registry_.add("square", [](int x) { return x * x; });
  strand::StoreTaskWriter<int> square(store_, "square");
  std::vector<strand::ComputationHandle<int>> handles;
  for (int i = 0; i < 20; ++i) handles.push_back(square(i));
  strand::Worker worker(store_, registry_, {.concurrency = 3});
  for (int i = 0; i < 20; ++i)
    EXPECT_EQ(handles[static_cast<std::size_t>(i)].get_result(5s), i * i);
  worker.stop();
  EXPECT_EQ(worker.stats().completed, 20u);
  EXPECT_EQ(worker.stats().failed, 0u);
}

TEST_F(WorkerTest, UnknownFunctionFailsThatJobOnceAndTheWorkerCarriesOn) {
  registry_.add("ok", [] { return 1; });
  const std::string bad = queue_->enqueue({.function = "nope", .options = {.max_retries = 3}});
  const std::string good = queue_->enqueue({.function = "ok"});
  strand::Worker worker(store_, registry_);
  const Record r = finished(store_, bad);
  EXPECT_EQ(r.status, Status::failed);
  ASSERT_TRUE(r.error);
  EXPECT_EQ(r.error->type, "strand::UnknownFunction");
  EXPECT_EQ(r.error->message, "strand: no function \"nope\" is registered (registered: ok)");
  EXPECT_EQ(r.job->failures, 1);  // not retried: it cannot succeed
  EXPECT_EQ(finished(store_, good).status, Status::completed);
}

TEST_F(WorkerTest, BadArgumentsFailThatJobWithTheReason) {
  registry_.add("add", [](int a, int b) { return a + b; });
  const std::string count = queue_->enqueue({.function = "add", .args = {1}});
  const std::string type = queue_->enqueue({.function = "add", .args = {1, "2"}});
  strand::Worker worker(store_, registry_);
  EXPECT_EQ(finished(store_, count).error->message,
            "strand: function \"add\" takes 2 arguments (int, int); the job gives 1");
  const Record r = finished(store_, type);
  EXPECT_EQ(r.error->type, "strand::BadArguments");
  EXPECT_EQ(r.error->message,
            "strand: function \"add\": argument 2 of 2 (int) does not decode from \"2\": "
            "[json.exception.type_error.302] type must be number, but is string");
}

TEST_F(WorkerTest, AJobThatAlwaysThrowsFailsAfterExactlyMaxRetriesWithBackoff) {
  std::atomic<int> calls{0};
  registry_.add("flaky", [&calls]() -> int {
    ++calls;
    throw std::runtime_error("always");
  });
  const std::string id =
      queue_->enqueue({.function = "flaky", .options = {.max_retries = 3, .retry_backoff = 40ms}});
  strand::Worker worker(store_, registry_);
  const Record r = finished(store_, id);
  EXPECT_EQ(r.status, Status::failed);
  EXPECT_EQ(calls.load(), 4);  // the first attempt and 3 retries
  EXPECT_EQ(r.job->failures, 4);
  ASSERT_EQ(r.job->history.size(), 4u);
  for (std::size_t i = 1; i < 4; ++i) {
    // backoff * 2^(i-1) at least halved by the jitter
    const auto gap = r.job->history[i].started - *r.job->history[i - 1].ended;
    EXPECT_GE(gap, std::chrono::milliseconds(20 << (i - 1)) - 2ms) << "retry " << i;
  }
  EXPECT_EQ(r.error->type, "std::runtime_error");
  EXPECT_THROW((void)strand::ComputationHandle<int>(id, store_).get_result(), std::runtime_error);
}

TEST_F(WorkerTest, CancellingARunningJobRequestsItsStopTokenAndDropsItsResult) {
  Gate started;
  Gate stopped;
  registry_.add("wait", [&](std::stop_token stop) {
    started.open();
    strand::testing::sleep_until_stopped(stop);
    stopped.open();
    return 1;
  });
  strand::StoreTaskWriter<int> wait(store_, "wait");
  auto handle = wait();
  strand::Worker worker(store_, registry_, {.lease = 90ms});  // heartbeats every 30 ms
  ASSERT_TRUE(started.wait_for(5s));
  EXPECT_TRUE(handle.cancel());
  ASSERT_TRUE(stopped.wait_for(5s));
  worker.stop();
  EXPECT_EQ(handle.status(), Status::cancelled);
  EXPECT_EQ(worker.stats().fenced, 1u);
  EXPECT_EQ(worker.stats().completed, 0u);
}

TEST_F(WorkerTest, AJobPastItsTimeoutIsStoppedAndFailsWithTimeout) {
  registry_.add("wait", [](std::stop_token stop) { strand::testing::sleep_until_stopped(stop); });
  const std::string id = queue_->enqueue({.function = "wait", .options = {.timeout = 100ms}});
  strand::Worker worker(store_, registry_);
  const Record r = finished(store_, id);
  EXPECT_EQ(r.status, Status::failed);
  EXPECT_EQ(r.error->type, "strand::Timeout");
  EXPECT_EQ(r.error->message, "strand: job \"wait\" timed out after 100 ms");
  EXPECT_THROW((void)strand::ComputationHandle<void>(id, store_).get_result(), strand::Timeout);
}

TEST_F(WorkerTest, ALostLeaseStopsTheJobAndItsResultIsNotRecorded) {
  Gate started;
  Gate stopped;
  registry_.add("wait", [&](std::stop_token stop) {
    started.open();
    strand::testing::sleep_until_stopped(stop);
    stopped.open();
    return 1;
  });
  const std::string id = queue_->enqueue({.function = "wait"});
  strand::Worker worker(store_, registry_, {.lease = 90ms});
  ASSERT_TRUE(started.wait_for(5s));
  // Another claim took the job meanwhile (as after a lease that ran out): its token moved on.
  store_->update(id, [](std::optional<Record> r) -> std::optional<Record> {
    if (!r || !r->job) return std::nullopt;
    Record moved = std::move(*r);
    moved.job->token += 1;
    return moved;
  });
  ASSERT_TRUE(stopped.wait_for(5s));
  worker.stop();
  EXPECT_EQ(store_->get(id).status, Status::running);  // the other claim's to finish
  EXPECT_EQ(worker.stats().fenced, 1u);
}

// A job whose lease was taken over keeps running until its worker hears of it; meanwhile its
// progress reports must not write over the new holder's.
TEST_F(WorkerTest, AJobThatLostItsLeaseCannotReportProgress) {
  Gate first_report;
  Gate moved_on;
  Gate second_report;
  registry_.add("report", [&] {
    EXPECT_TRUE(strand::report_progress(0.25, "mine"));
    first_report.open();
    EXPECT_TRUE(moved_on.wait_for(5s));
    EXPECT_TRUE(strand::report_progress(0.75, "stale"));  // after the token moved on
    second_report.open();
    return 1;
  });
  const std::string id = queue_->enqueue({.function = "report"});
  strand::Worker worker(store_, registry_, {});
  ASSERT_TRUE(first_report.wait_for(5s));
  EXPECT_EQ(store_->get(id).progress, 0.25);
  // The token moves on, as with a claim by another worker after this lease ran out.
  store_->update(id, [](std::optional<Record> r) -> std::optional<Record> {
    if (!r || !r->job) return std::nullopt;
    Record moved = std::move(*r);
    moved.job->token += 1;
    moved.progress = 0.5;
    moved.progress_message = "the new holder's";
    return moved;
  });
  moved_on.open();
  ASSERT_TRUE(second_report.wait_for(5s));
  worker.stop();
  const Record r = store_->get(id);
  EXPECT_EQ(r.progress, 0.5);
  EXPECT_EQ(r.progress_message, "the new holder's");
}

TEST_F(WorkerTest, StopReleasesRunningJobsAfterTheGracePeriod) {
  Gate started;
  registry_.add("wait", [&](std::stop_token stop) {
    started.open();
    strand::testing::sleep_until_stopped(stop);
  });
  const std::string id = queue_->enqueue({.function = "wait"});
  strand::Worker worker(store_, registry_, {.shutdown_grace = 50ms});
  ASSERT_TRUE(started.wait_for(5s));
  worker.stop();
  const Record r = store_->get(id);
  EXPECT_EQ(r.status, Status::queued);  // another worker takes it at once
  EXPECT_EQ(r.job->failures, 0);
  EXPECT_EQ(r.job->history.back().outcome, "released");
  EXPECT_EQ(worker.stats().released, 1u);
}

TEST_F(WorkerTest, StopLetsRunningJobsFinishWithinTheGracePeriod) {
  Gate started;
  Gate finish;
  registry_.add("slow", [&] {
    started.open();
    (void)finish.wait_for(5s);
    return 7;
  });
  const std::string id = queue_->enqueue({.function = "slow"});
  strand::Worker worker(store_, registry_, {.shutdown_grace = 5s});
  ASSERT_TRUE(started.wait_for(5s));
  std::thread stopper([&] { worker.stop(); });
  finish.open();
  stopper.join();
  EXPECT_EQ(store_->get(id).value, 7);
}

TEST_F(WorkerTest, JobsReportProgressIntoTheirRecord) {
  Gate reported;
  Gate finish;
  registry_.add("work", [&] {
    strand::report_progress(0.5, "half way");
    reported.open();
    (void)finish.wait_for(5s);
  });
  const std::string id = queue_->enqueue({.function = "work"});
  strand::Worker worker(store_, registry_);
  ASSERT_TRUE(reported.wait_for(5s));
  const strand::ComputationHandle<void> handle(id, store_);
  EXPECT_EQ(handle.progress().fraction, 0.5);
  EXPECT_EQ(handle.progress().message, "half way");
  finish.open();
  handle.get_result(5s);
}

TEST_F(WorkerTest, ListensOnlyToItsQueues) {
  registry_.add("f", [] { return 1; });
  const std::string other = queue_->enqueue({.function = "f", .options = {.queue = "other"}});
  const std::string mine = queue_->enqueue({.function = "f", .options = {.queue = "mine"}});
  strand::Worker worker(store_, registry_, {.queues = {"mine"}});
  EXPECT_EQ(finished(store_, mine).status, Status::completed);
  worker.stop();
  EXPECT_EQ(store_->get(other).status, Status::queued);
}

TEST_F(WorkerTest, ProcessIsolationRunsEachJobInAChildAndSurvivesACrash) {
  registry_.add("pid", [] { return static_cast<int>(::getpid()); });
  registry_.add("crash", [] { ::raise(SIGKILL); });
  const std::string crash = queue_->enqueue({.function = "crash"});
  const std::string pid = queue_->enqueue({.function = "pid"});
  strand::Worker worker(store_, registry_, {.isolation = strand::Isolation::process});
  const Record crashed = finished(store_, crash);
  EXPECT_EQ(crashed.status, Status::failed);
  EXPECT_EQ(crashed.error->type, "strand::ProcessCrashed");
  EXPECT_NE(crashed.error->message.find("killed by signal 9 (SIGKILL)"), std::string::npos)
      << crashed.error->message;
  const Record r = finished(store_, pid);
  EXPECT_EQ(r.status, Status::completed);
  EXPECT_NE(r.value.get<int>(), ::getpid());
}

TEST_F(WorkerTest, ProcessIsolationKillsACancelledJob) {
  // The job's child says it has started through a pipe it inherits (a claimed job is RUNNING in
  // its record before any child exists: cancelling then would only drop it at shutdown).
  int started[2];
  ASSERT_EQ(::pipe(started), 0);
  registry_.add("forever", [fd = started[1]] {
    (void)!::write(fd, "s", 1);
    for (;;) ::pause();
  });
  strand::StoreTaskWriter<void> forever(store_, "forever");
  auto handle = forever();
  strand::Worker worker(store_, registry_,
                        {.isolation = strand::Isolation::process, .lease = 60ms});
  pollfd ready{.fd = started[0], .events = POLLIN, .revents = 0};
  ASSERT_EQ(::poll(&ready, 1, 5000), 1) << "the job's child never started";
  ::close(started[0]);
  ::close(started[1]);
  EXPECT_EQ(handle.status(), Status::running);
  EXPECT_TRUE(handle.cancel());
  worker.stop();  // returns: the child was killed
  EXPECT_EQ(worker.stats().fenced, 1u);
}

TEST_F(WorkerTest, BadOptionsAreRejected) {
  EXPECT_THROW(strand::Worker(store_, registry_, {.concurrency = 0}), std::invalid_argument);
  try {
    strand::Worker worker(store_, registry_, {.queues = {}});
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "strand: a worker needs a queue");
  }
  try {
    strand::Worker worker(store_, registry_, {.lease = 5ms});
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "strand: a worker's lease must be at least 30 ms");
  }
}

TEST_F(WorkerTest, WorksOnTheFilesystemStoreToo) {
  strand::testing::TempDir dir;
  auto store = strand::FileSystemStore::open(dir.path() / "jobs");
  registry_.add("add", [](int a, int b) { return a + b; });
  strand::StoreTaskWriter<int> add(store, "add");
  auto five = add(2, 3);
  strand::Worker worker(store, registry_);
  EXPECT_EQ(five.get_result(5s), 5);
}

}  // namespace
