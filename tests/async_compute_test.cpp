// async_compute and ComputationHandle: the au test suite's cases, on each backend and store.
#include "strand/async_compute.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "store_support.hpp"
#include "strand/memory_store.hpp"
#include "strand/sqlite_store.hpp"
#include "strand/store.hpp"
#include "support.hpp"

using namespace std::chrono_literals;

namespace app {
struct Overheated : std::runtime_error {
  using std::runtime_error::runtime_error;
};
}  // namespace app

namespace {

using strand::Status;
using strand::Target;

long factorial(int n) {
  long r = 1;
  for (int i = 2; i <= n; ++i) r *= i;
  return r;
}

strand::ComputeOptions memory_on(Target backend) {
  return {.store = strand::MemoryStore::open(), .backend = backend};
}

// Every backend with an in-process store, and the process backend with a store the child reaches.
class Backend : public ::testing::TestWithParam<Target> {
 protected:
  std::filesystem::path dir_ = std::filesystem::temp_directory_path() /
                               ("strand_compute_" + std::to_string(::getpid()) + "_" +
                                ::testing::UnitTest::GetInstance()->current_test_info()->name());
  void TearDown() override { std::filesystem::remove_all(dir_); }

  strand::ComputeOptions options() {
    if (GetParam() == Target::process) {
      // A child cannot write into the parent's memory: give it a store it can reach.
      return {.backend = Target::process, .base_path = dir_};
    }
    return memory_on(GetParam());
  }
};

TEST_P(Backend, GetResultWaitsForTheValue) {
  auto fn = strand::async_compute(factorial, options());
  auto c = fn(10);
  EXPECT_EQ(c.get_result(5s), 3628800L);
  EXPECT_EQ(c.status(), Status::completed);
  EXPECT_TRUE(c.is_ready());
  EXPECT_EQ(c.key().size(), 32U);
}

TEST_P(Backend, AFailureRethrowsWithItsType) {
  auto fn = strand::async_compute(
      [](int x) -> int {
        if (x < 0) throw std::invalid_argument("x must be positive");
        return x * x;
      },
      options());
  auto c = fn(-5);
  EXPECT_THROW(c.get_result(5s), std::invalid_argument);
  EXPECT_EQ(c.status(), Status::failed);
  EXPECT_EQ(c.record().error, (strand::ErrorInfo{"std::invalid_argument", "x must be positive"}));
}

TEST_P(Backend, MetadataSaysFunctionAndBackend) {
  auto opts = options();
  opts.name = "factorial";
  auto fn = strand::async_compute(factorial, opts);
  auto c = fn(5);
  c.get_result(5s);
  EXPECT_EQ(c.metadata()["function"], "factorial");
  EXPECT_EQ(c.metadata()["backend"], std::string(strand::to_string(GetParam())));
  const auto r = c.record();
  ASSERT_TRUE(r.started.has_value());
  ASSERT_TRUE(r.completed.has_value());
  EXPECT_GE(*r.completed, *r.started);  // the duration of a computation is known
}

TEST_P(Backend, ProgressReportedInsideIsReadOutside) {
  strand::testing::Gate go;
  auto opts = options();
  auto fn = strand::async_compute(
      [](int) {
        strand::report_progress(0.5, "half way");
        return 1;
      },
      opts);
  auto c = fn(0);
  c.get_result(5s);
  // Completion sets progress to 1 but keeps the last message.
  EXPECT_EQ(c.progress().fraction, 1.0);
  EXPECT_EQ(c.progress().message, "half way");
}

TEST_P(Backend, VoidComputations) {
  auto fn = strand::async_compute([] {}, options());
  auto c = fn();
  c.get_result(5s);
  EXPECT_EQ(c.status(), Status::completed);
}

INSTANTIATE_TEST_SUITE_P(AllBackends, Backend,
                         ::testing::Values(Target::sync, Target::thread, Target::pool,
                                           Target::process),
                         [](const auto& info) {
                           return std::string(strand::to_string(info.param));
                         });

TEST(ComputationHandle, IsReadyForEachStatus) {
  auto store = strand::MemoryStore::open();
  for (Status s : {Status::pending, Status::queued, Status::running, Status::completed,
                   Status::failed, Status::cancelled}) {
    strand::Record r;
    r.key = "k" + std::string(strand::to_string(s));
    r.status = s;
    store->set(r);
    strand::ComputationHandle<int> h(r.key, store);
    EXPECT_EQ(h.is_ready(), strand::is_terminal(s)) << strand::to_string(s);
    EXPECT_EQ(h.status(), s);
  }
}

TEST(ComputationHandle, AMissingKeyIsPending) {
  strand::ComputationHandle<int> h("never-written", strand::MemoryStore::open());
  EXPECT_EQ(h.status(), Status::pending);
  EXPECT_FALSE(h.is_ready());
}

TEST(ComputationHandle, GetResultWithoutTimeoutOnAnUnfinishedComputationIsNotReady) {
  strand::testing::Gate gate;
  auto fn = strand::async_compute(
      [gate] {
        gate.wait();
        return 1;
      },
      memory_on(Target::thread));
  auto c = fn();
  try {
    (void)c.get_result();
    FAIL() << "expected NotReady";
  } catch (const strand::NotReady& e) {
    EXPECT_EQ(std::string(e.what()), "strand: computation " + c.key() + " has not finished yet");
  }
  gate.open();
  EXPECT_EQ(c.get_result(5s), 1);
  EXPECT_EQ(c.get_result(), 1);  // once finished, no timeout is needed
}

TEST(ComputationHandle, GetResultTimesOut) {
  strand::testing::Gate gate;
  auto fn = strand::async_compute(
      [gate] {
        gate.wait();
        return 1;
      },
      memory_on(Target::thread));
  auto c = fn();
  try {
    (void)c.get_result(20ms);
    FAIL() << "expected Timeout";
  } catch (const strand::Timeout& e) {
    EXPECT_STREQ(e.what(), "strand: timed out after 20ms waiting for a task");
  }
  gate.open();
  EXPECT_EQ(c.get_result(5s), 1);
}

TEST(ComputationHandle, GetResultAfterADelayWakesOnTheWrite) {
  strand::testing::Gate gate;
  auto fn = strand::async_compute(
      [gate] {
        gate.wait();
        return 7;
      },
      memory_on(Target::thread));
  auto c = fn();
  std::thread opener([gate] { gate.open(); });
  EXPECT_EQ(c.get_result(5s), 7);
  opener.join();
}

TEST(ComputationHandle, AReattachedHandleWaitsThroughTheStore) {
  strand::testing::Gate gate;
  auto store = strand::MemoryStore::open();
  auto fn = strand::async_compute(
      [gate] {
        gate.wait();
        return 9;
      },
      {.store = store, .backend = Target::thread});
  auto c = fn();
  strand::ComputationHandle<int> again(c.key(), store);
  EXPECT_EQ(again.status(), Status::running);
  std::thread opener([gate] { gate.open(); });
  EXPECT_EQ(again.get_result(5s), 9);
  opener.join();
}

TEST(ComputationHandle, AReattachedHandleRethrowsStandardTypesAndRemoteErrors) {
  auto store = strand::MemoryStore::open();
  auto fn = strand::async_compute([]() -> int { throw app::Overheated("boiler at 130C"); },
                                  {.store = store, .backend = Target::sync});
  auto c = fn();
  // In the launching process: the very exception.
  EXPECT_THROW(c.get_result(5s), app::Overheated);
  // Re-attached: the type name and message.
  strand::ComputationHandle<int> again(c.key(), store);
  try {
    (void)again.get_result(5s);
    FAIL() << "expected RemoteError";
  } catch (const strand::RemoteError& e) {
    EXPECT_EQ(e.type_name(), "app::Overheated");
    EXPECT_EQ(e.message(), "boiler at 130C");
  }
}

TEST(ComputationHandle, CancelAPendingComputation) {
  auto store = strand::MemoryStore::open();
  strand::ComputationHandle<int> h("queued-somewhere", store);
  EXPECT_TRUE(h.cancel());
  EXPECT_EQ(h.status(), Status::cancelled);
  EXPECT_THROW(h.get_result(), strand::Cancelled);
}

TEST(ComputationHandle, CancelACompletedComputationIsFalse) {
  auto fn = strand::async_compute([] { return 1; }, memory_on(Target::sync));
  auto c = fn();
  EXPECT_FALSE(c.cancel());
  EXPECT_EQ(c.status(), Status::completed);
  EXPECT_EQ(c.get_result(), 1);
}

TEST(ComputationHandle, CancelStopsARunningThreadComputation) {
  strand::testing::Gate started;
  strand::testing::Gate stopped;  // Gates, not locals by reference: the function may outlive us
  auto fn = strand::async_compute(
      [started, stopped](std::stop_token stop) {
        started.open();
        strand::testing::sleep_until_stopped(stop);
        stopped.open();
        return 1;
      },
      memory_on(Target::thread));
  auto c = fn();
  ASSERT_TRUE(started.wait_for(5s));
  EXPECT_TRUE(c.cancel());
  EXPECT_EQ(c.status(), Status::cancelled);
  EXPECT_THROW(c.get_result(5s), strand::Cancelled);
  EXPECT_TRUE(stopped.wait_for(5s));         // the function saw its stop token
  EXPECT_EQ(c.status(), Status::cancelled);  // and its late result was not recorded
}

TEST(ComputationHandle, CancelAComputationQueuedOnThePoolKeepsItFromStarting) {
  strand::ThreadPool pool(1);
  strand::testing::Gate release;
  pool.post([release] { release.wait(); });  // the only worker is busy until the gate opens
  std::atomic<int> calls{0};
  auto fn = strand::async_compute(
      [&calls] {
        ++calls;
        return 1;
      },
      {.store = strand::MemoryStore::open(), .backend = Target::pool, .pool = &pool});
  auto c = fn();
  EXPECT_EQ(c.status(), Status::running) << "recorded as launched";
  EXPECT_TRUE(c.cancel());
  release.open();
  EXPECT_THROW(c.get_result(5s), strand::Cancelled);
  pool.shutdown();  // drained: the cancelled computation's turn has come and gone
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(c.status(), Status::cancelled);
}

TEST(ComputationHandle, AMalformedKeyIsRefused) {
  EXPECT_THROW(strand::ComputationHandle<int>("../etc", strand::MemoryStore::open()),
               strand::InvalidKey);
}

TEST(AsyncCompute, TheDecoratorsUtilities) {
  auto store = strand::MemoryStore::open({.ttl = 1s});
  auto fn = strand::async_compute(factorial, {.store = store, .backend = Target::pool});
  EXPECT_EQ(fn.store(), store);
  EXPECT_EQ(fn.backend(), Target::pool);
  EXPECT_EQ(fn.name(), "computation");
  auto c = fn(3);
  c.get_result(5s);
  EXPECT_EQ(fn.cleanup_expired(), 0U);
  // An old record expires.
  strand::Record old = store->get(c.key());
  old.completed = std::chrono::system_clock::now() - 1h;
  store->set(old);
  EXPECT_EQ(fn.cleanup_expired(), 1U);
  EXPECT_EQ(c.status(), Status::pending);  // gone: reads as pending
}

TEST(AsyncCompute, TheDefaultsAreAFileStoreAndTheProcessBackend) {
  auto fn = strand::async_compute([](int x) { return x * 2; });
  EXPECT_EQ(fn.backend(), Target::process);
  EXPECT_EQ(fn.store()->url(),
            "file://" + (std::filesystem::temp_directory_path() / "strand-computations").string());
  EXPECT_EQ(fn(21).get_result(5s), 42);
}

TEST(Middleware, MetricsCountEveryComputationOnEveryBackend) {
  auto metrics = std::make_shared<strand::MetricsMiddleware>();
  auto dir =
      std::filesystem::temp_directory_path() / ("strand_metrics_" + std::to_string(::getpid()));
  for (Target backend : {Target::thread, Target::pool, Target::process}) {
    strand::ComputeOptions opts{.backend = backend, .base_path = dir, .middleware = {metrics}};
    if (backend != Target::process) opts.store = strand::MemoryStore::open();
    auto fn = strand::async_compute(
        [](int x) {
          if (x == 3) throw std::runtime_error("three");
          return x;
        },
        opts);
    std::vector<strand::ComputationHandle<int>> handles;
    for (int i = 0; i < 4; ++i) handles.push_back(fn(i));
    for (auto& h : handles) {
      try {
        (void)h.get_result(5s);
      } catch (const std::runtime_error&) {
      }
    }
  }
  const auto stats = metrics->get_stats();
  EXPECT_EQ(stats.total, 12U);  // children's computations counted too
  EXPECT_EQ(stats.completed, 9U);
  EXPECT_EQ(stats.failed, 3U);
  EXPECT_GE(stats.avg_duration, 0.0);
  std::filesystem::remove_all(dir);
}

// Outcomes (and, on SQLite, launches) are written in groups: many threads launching and many
// finishing at once must each see their own record, launched as running and finished right.
TEST(GroupCommit, ComputationsLaunchedFromSeveralThreadsOnSqliteAreAllRecorded) {
  strand::testing::TempDir dir;
  auto store = strand::SqliteStore::open(dir.path() / "group.db");
  auto metrics = std::make_shared<strand::MetricsMiddleware>();
  auto fn = strand::async_compute(
      [](int x) {
        if (x % 10 == 3) throw std::out_of_range("bad " + std::to_string(x));
        return x * 2;
      },
      {.store = store, .backend = Target::pool, .middleware = {metrics}});
  constexpr int kThreads = 3;
  constexpr int kEach = 60;
  std::vector<std::vector<strand::ComputationHandle<int>>> handles(kThreads);
  std::atomic<int> seen_pending{0};
  {
    std::vector<std::jthread> launchers;
    for (int t = 0; t < kThreads; ++t) {
      launchers.emplace_back([&, t] {
        for (int i = 0; i < kEach; ++i) {
          handles[static_cast<std::size_t>(t)].push_back(fn(t * kEach + i));
          if (handles[static_cast<std::size_t>(t)].back().status() == Status::pending) {
            ++seen_pending;
          }
        }
      });
    }
  }
  EXPECT_EQ(seen_pending, 0) << "a launch returns once its record is written";
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kEach; ++i) {
      const int x = t * kEach + i;
      auto& h = handles[static_cast<std::size_t>(t)][static_cast<std::size_t>(i)];
      if (x % 10 == 3) {
        EXPECT_THROW((void)h.get_result(5s), std::out_of_range);
        EXPECT_EQ(h.record().error->message, "bad " + std::to_string(x));
      } else {
        EXPECT_EQ(h.get_result(5s), x * 2);
      }
    }
  }
  EXPECT_EQ(store->size(), std::size_t{kThreads * kEach});
  const auto stats = metrics->get_stats();
  EXPECT_EQ(stats.completed, std::size_t{kThreads * kEach * 9 / 10});
  EXPECT_EQ(stats.failed, std::size_t{kThreads * kEach / 10});
}

TEST(AsyncCompute, MapLaunchesOneComputationPerElementInOrder) {
  strand::testing::TempDir dir;
  for (auto store :
       {std::shared_ptr<strand::Store>(strand::MemoryStore::open()),
        std::shared_ptr<strand::Store>(strand::SqliteStore::open(dir.path() / "map.db"))}) {
    auto square = strand::async_compute([](int x) { return long{x} * x; },
                                        {.store = store, .backend = Target::pool});
    const std::vector<strand::ComputationHandle<long>> handles = square.map(std::vector{1, 2, 3});
    EXPECT_EQ(strand::get_results(handles, 5s), (std::vector<long>{1, 4, 9})) << store->url();
    auto add =
        strand::async_compute([](int a, const std::string& b) { return b + std::to_string(a); },
                              {.store = store, .backend = Target::thread});
    const std::vector<std::tuple<int, std::string>> calls = {{1, "a"}, {2, "b"}};
    EXPECT_EQ(strand::get_results(add.map(calls), 5s), (std::vector<std::string>{"a1", "b2"}));
    EXPECT_TRUE(square.map(std::vector<int>{}).empty());
  }
}

TEST(AsyncCompute, MapRecordsTheComputationsAMiddlewareRefuses) {
  auto limit = std::make_shared<strand::RateLimitMiddleware>(2, 1h);
  auto fn = strand::async_compute(
      [](int x) { return x; },
      {.store = strand::MemoryStore::open(), .backend = Target::pool, .middleware = {limit}});
  auto handles = fn.map(std::vector{1, 2, 3});
  ASSERT_EQ(handles.size(), 3u);
  EXPECT_EQ(handles[0].get_result(5s), 1);
  EXPECT_EQ(handles[1].get_result(5s), 2);
  EXPECT_THROW((void)handles[2].get_result(5s), strand::RateLimited);
  EXPECT_EQ(handles[2].status(), Status::failed);
}

// A hook runs on the thread that records; launching from it must not wait for that thread itself.
TEST(GroupCommit, AHookMayLaunchAnotherComputationOfTheSameFunction) {
  strand::testing::TempDir dir;
  auto store = strand::SqliteStore::open(dir.path() / "reentrant.db");
  struct Relaunch : strand::Middleware {
    std::function<void()> launch;
    std::atomic<int> after_calls{0};
    void after(const strand::ComputationInfo&, const nlohmann::json& value) override {
      ++after_calls;
      if (value == 0) launch();
    }
  };
  auto relaunch = std::make_shared<Relaunch>();
  auto fn = strand::async_compute(
      [](int x) { return x; }, {.store = store, .backend = Target::sync, .middleware = {relaunch}});
  std::optional<strand::ComputationHandle<int>> second;
  relaunch->launch = [&] {
    second = fn(1);
  };
  EXPECT_EQ(fn(0).get_result(5s), 0);
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->get_result(5s), 1);
  EXPECT_EQ(relaunch->after_calls, 2);
}

TEST(Middleware, RateLimitFailsTheComputationsOverTheLimit) {
  auto limit = std::make_shared<strand::RateLimitMiddleware>(2, 1h);
  auto fn = strand::async_compute(
      [] { return 1; },
      {.store = strand::MemoryStore::open(), .backend = Target::sync, .middleware = {limit}});
  EXPECT_EQ(fn().get_result(), 1);
  EXPECT_EQ(fn().get_result(), 1);
  auto third = fn();
  EXPECT_EQ(third.status(), Status::failed);
  try {
    (void)third.get_result();
    FAIL() << "expected RateLimited";
  } catch (const strand::RateLimited& e) {
    EXPECT_STREQ(e.what(), "strand: rate limit exceeded: at most 2 computations per 3600s");
  }
  // Re-attached elsewhere, the refusal reads back by name.
  strand::ComputationHandle<int> again(third.key(), fn.store());
  try {
    (void)again.get_result();
    FAIL() << "expected RemoteError";
  } catch (const strand::RemoteError& e) {
    EXPECT_EQ(e.type_name(), "strand::RateLimited");
    EXPECT_EQ(e.message(), "strand: rate limit exceeded: at most 2 computations per 3600s");
  }
}

struct Throwing : strand::Middleware {
  void before(const strand::ComputationInfo&) override { throw std::runtime_error("hook broke"); }
  void after(const strand::ComputationInfo&, const nlohmann::json&) override {
    throw std::runtime_error("hook broke");
  }
};

TEST(Middleware, AHookThatThrowsIsReportedAndDoesNotBreakTheComputation) {
  strand::testing::ReportCapture reports;
  auto fn = strand::async_compute([] { return 5; }, {.store = strand::MemoryStore::open(),
                                                     .backend = Target::sync,
                                                     .middleware = {std::make_shared<Throwing>()}});
  EXPECT_EQ(fn().get_result(), 5);
  const auto seen = reports.reports();
  ASSERT_EQ(seen.size(), 2U);
  EXPECT_EQ(seen[0].where, "strand: a middleware's before() threw; the computation goes on");
  EXPECT_EQ(seen[0].description, "std::runtime_error: hook broke");
  EXPECT_EQ(seen[1].where, "strand: a middleware's after() threw");
}

TEST(Middleware, LoggingWritesALinePerEvent) {
  auto logging = std::make_shared<strand::LoggingMiddleware>(strand::LogLevel::info, "strand-test");
  auto fn = strand::async_compute(
      [] { return 5; },
      {.store = strand::MemoryStore::open(), .backend = Target::sync, .middleware = {logging}});
  ::testing::internal::CaptureStderr();
  fn().get_result();
  const std::string out = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(out.find("computation "), std::string::npos) << out;
  EXPECT_NE(out.find("(computation) completed in "), std::string::npos) << out;
}

TEST(TemporaryAsyncCompute, TheDirectoryGoesAwayAtScopeEnd) {
  std::filesystem::path dir;
  {
    auto temp = strand::temporary_async_compute({.backend = Target::thread, .ttl = 60s});
    dir = temp.path();
    auto quick_job = temp([](int x) { return x * x; });
    EXPECT_EQ(quick_job(10).get_result(5s), 100);
    EXPECT_TRUE(std::filesystem::exists(dir));
    EXPECT_FALSE(std::filesystem::is_empty(dir));
  }
  EXPECT_FALSE(std::filesystem::exists(dir));
}

// The seed's web example: one process launches, another (a request handler) re-attaches by key.
TEST(Integration, AnotherProcessReattachesByKey) {
  auto temp = strand::temporary_async_compute({.backend = Target::process});
  auto fn = temp([](int x) {
    strand::report_progress(0.5, "working");
    return x + 1;
  });
  auto c = fn(41);
  EXPECT_EQ(c.get_result(5s), 42);
  const pid_t pid = ::fork();
  if (pid == 0) {
    auto store = strand::open_store(temp.store()->url());
    strand::ComputationHandle<int> again(c.key(), store);
    ::_exit(again.get_result(5s) == 42 && again.progress().message == "working" ? 0 : 1);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST(Integration, AProcessCrashIsRecordedByTheParent) {
  auto temp = strand::temporary_async_compute({.backend = Target::process});
  auto fn = temp([] {
    std::signal(SIGSEGV, SIG_DFL);
    std::raise(SIGSEGV);
    return 0;
  });
  auto c = fn();
  EXPECT_THROW(c.get_result(5s), strand::ProcessCrashed);
  const auto r = c.record();
  EXPECT_EQ(r.status, Status::failed);
  ASSERT_TRUE(r.error.has_value());
  EXPECT_EQ(r.error->type, "strand::ProcessCrashed");
}

TEST(Integration, CancelKillsAProcessComputation) {
  auto temp = strand::temporary_async_compute({.backend = Target::process});
  auto fn = temp([] {
    for (;;) ::pause();
    return 0;
  });
  auto c = fn();
  EXPECT_TRUE(c.cancel());
  EXPECT_EQ(c.status(), Status::cancelled);
  EXPECT_THROW(c.get_result(5s), strand::Cancelled);
  EXPECT_TRUE(strand::wait_process_tasks_reaped(5s));
}

}  // namespace
