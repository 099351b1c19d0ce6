// The Store contract, run against every store: MemoryStore, FileSystemStore (a fresh temporary
// directory), SqliteStore (a fresh temporary file) and RedisStore (a fresh key prefix on a real
// redis-server started for the test), in both formats where the store writes bytes.
#include "strand/store.hpp"
#include "strand/memory_store.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "redis_support.hpp"
#include "store_support.hpp"
#include "strand/filesystem_store.hpp"
#include "strand/redis_store.hpp"
#include "strand/sqlite_store.hpp"

namespace strand {
// Failures print the record as JSON.
inline void PrintTo(const Record& r, std::ostream* out) {
  *out << nlohmann::json(r).dump();
}
}  // namespace strand

namespace {

using namespace std::chrono_literals;
using strand::Format;
using strand::Record;
using strand::Status;
using strand::StoreOptions;

struct Kind {
  const char* name;
  Format format;
};

// A time the stores keep exactly (they write milliseconds).
Record::time_point ms_ago(std::chrono::milliseconds ago) {
  return std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now()) -
         ago;
}

class StoreTest : public ::testing::TestWithParam<Kind> {
 protected:
  std::shared_ptr<strand::Store> open(StoreOptions options = {}) {
    options.format = GetParam().format;
    const std::string kind = GetParam().name;
    if (kind == "memory") return strand::MemoryStore::open(options);
    if (kind == "filesystem") {
      return strand::FileSystemStore::open(dir_.path() / ("fs" + std::to_string(++opened_)),
                                           options);
    }
    if (kind == "redis") {
      return strand::RedisStore::open("127.0.0.1", strand::testing::shared_redis().port(), 0,
                                      options, {.prefix = "t" + std::to_string(++opened_) + ":"});
    }
    return strand::SqliteStore::open(dir_.path() / ("db" + std::to_string(++opened_) + ".db"),
                                     options);
  }
  // Redis expires records by itself: cleanup_expired() finds nothing left to remove.
  [[nodiscard]] static bool expires_by_itself() { return std::string(GetParam().name) == "redis"; }

  strand::testing::TempDir dir_;
  int opened_ = 0;
};

Record full_record(const std::string& key) {
  Record r;
  r.key = key;
  r.status = Status::failed;
  r.value = {{"answer", 42}, {"list", {1, 2.5, "three"}}};
  r.error = strand::ErrorInfo{"std::out_of_range", "index 7"};
  r.created = ms_ago(3s);
  r.started = ms_ago(2s);
  r.completed = ms_ago(1s);
  r.metadata = {{"user", "ada"}, {"attempt", 2}};
  r.progress = 0.75;
  r.progress_message = "three quarters";
  return r;
}

TEST_P(StoreTest, ARecordRoundTripsWithEveryField) {
  auto store = open();
  EXPECT_EQ(store->format(), GetParam().format);
  Record expected = full_record("k1");
  const Record written = store->set(expected);
  EXPECT_EQ(written.version, 1u);
  expected.version = 1;
  EXPECT_EQ(written, expected);
  const auto found = store->find("k1");
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(*found, expected);
  EXPECT_EQ(store->get("k1"), expected);
}

TEST_P(StoreTest, AMissingKeyIsPending) {
  auto store = open();
  EXPECT_FALSE(store->find("nobody").has_value());
  const Record r = store->get("nobody");
  EXPECT_EQ(r.key, "nobody");
  EXPECT_EQ(r.status, Status::pending);
  EXPECT_EQ(r.version, 0u);
  EXPECT_TRUE(r.value.is_null());
}

TEST_P(StoreTest, EraseRemovesTheRecordOnce) {
  auto store = open();
  store->set({.key = "gone", .status = Status::completed, .value = 1});
  EXPECT_TRUE(store->erase("gone"));
  EXPECT_EQ(store->get("gone").status, Status::pending);
  EXPECT_FALSE(store->erase("gone"));
  EXPECT_EQ(store->size(), 0u);
}

TEST_P(StoreTest, KeysListsEveryRecordInOrder) {
  auto store = open();
  EXPECT_TRUE(store->keys().empty());
  for (const char* key : {"b", "a", "c.d", "-x"}) store->set({.key = key});
  EXPECT_EQ(store->keys(), (std::vector<std::string>{"-x", "a", "b", "c.d"}));
}

TEST_P(StoreTest, SizeCountsRecords) {
  auto store = open();
  EXPECT_EQ(store->size(), 0u);
  for (int i = 0; i < 5; ++i) store->set({.key = "k" + std::to_string(i)});
  store->set({.key = "k0", .status = Status::running});  // a rewrite is not a new record
  EXPECT_EQ(store->size(), 5u);
}

TEST_P(StoreTest, ExpiredRecordsReadAsMissing) {
  auto store = open({.ttl = 60s});
  store->set({.key = "old-done",
              .status = Status::completed,
              .created = ms_ago(3h),
              .completed = ms_ago(2h)});
  store->set({.key = "old-pending", .status = Status::running, .created = ms_ago(2h)});
  store->set({.key = "recently-done",
              .status = Status::completed,
              .created = ms_ago(3h),
              .completed = ms_ago(1s)});
  store->set({.key = "fresh", .status = Status::running});
  EXPECT_TRUE(store->is_expired(Record{.created = ms_ago(2h)}));
  EXPECT_FALSE(store->is_expired(Record{.created = ms_ago(3h), .completed = ms_ago(1s)}));
  EXPECT_FALSE(store->find("old-done").has_value());
  EXPECT_EQ(store->get("old-pending").status, Status::pending);
  EXPECT_EQ(store->get("recently-done").status, Status::completed);
  EXPECT_EQ(store->keys(), (std::vector<std::string>{"fresh", "recently-done"}));
  EXPECT_EQ(store->size(), 2u);
}

TEST_P(StoreTest, CleanupExpiredRemovesAndCountsOnlyExpiredRecords) {
  auto store = open({.ttl = 60s});
  for (int i = 0; i < 3; ++i) {
    store->set({.key = "old" + std::to_string(i),
                .status = Status::completed,
                .created = ms_ago(3h),
                .completed = ms_ago(2h)});
  }
  store->set({.key = "new0", .status = Status::completed});
  store->set({.key = "new1", .status = Status::running});
  EXPECT_EQ(store->cleanup_expired(), expires_by_itself() ? 0u : 3u);
  EXPECT_EQ(store->cleanup_expired(), 0u);
  EXPECT_EQ(store->keys(), (std::vector<std::string>{"new0", "new1"}));

  auto forever = open();  // without a TTL nothing expires
  forever->set({.key = "ancient", .created = ms_ago(24h * 365)});
  EXPECT_EQ(forever->cleanup_expired(), 0u);
  EXPECT_EQ(forever->size(), 1u);
}

TEST_P(StoreTest, CleanupRunsOnAccessWithItsProbability) {
  auto store = open({.ttl = 60s, .cleanup_probability = 1.0});
  store->set(
      {.key = "old", .status = Status::completed, .created = ms_ago(3h), .completed = ms_ago(2h)});
  (void)store->get("other");  // runs cleanup_expired()
  EXPECT_EQ(store->cleanup_expired(), 0u) << "the access already removed it";
}

TEST_P(StoreTest, UpdateIsAtomicAcrossThreads) {
  auto store = open();
  constexpr int kThreads = 4;
  constexpr int kIncrements = 50;
  std::vector<std::jthread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kIncrements; ++i) {
        store->update("counter", [](std::optional<Record> r) {
          if (!r) r = Record{.metadata = {{"count", 0}}};
          r->metadata["count"] = r->metadata["count"].get<int>() + 1;
          return r;
        });
      }
    });
  }
  threads.clear();
  const Record r = store->get("counter");
  EXPECT_EQ(r.metadata["count"], kThreads * kIncrements);
  EXPECT_EQ(r.version, std::uint64_t{kThreads * kIncrements});
}

TEST_P(StoreTest, VersionGrowsWithEveryWriteAndCreatedIsKept) {
  auto store = open();
  const Record first = store->set({.key = "v", .status = Status::queued});
  EXPECT_EQ(first.version, 1u);
  EXPECT_NE(first.created, Record::time_point{});
  EXPECT_EQ(store->set({.key = "v", .status = Status::running}).version, 2u);
  const auto third = store->update("v", [](std::optional<Record> r) {
    r->progress = 0.5;
    return r;
  });
  ASSERT_TRUE(third.has_value());
  EXPECT_EQ(third->version, 3u);
  const Record now = store->get("v");
  EXPECT_EQ(now.version, 3u);
  EXPECT_EQ(now.created, first.created);
  EXPECT_EQ(now.status, Status::running);
  EXPECT_EQ(now.progress, 0.5);
}

TEST_P(StoreTest, UpdateReturningNothingWritesNothing) {
  auto store = open();
  EXPECT_FALSE(store->update("none", [](std::optional<Record> r) { return r; }).has_value());
  EXPECT_EQ(store->size(), 0u);
  store->set({.key = "some"});
  const auto kept = store->update("some", [](std::optional<Record>) { return std::nullopt; });
  ASSERT_TRUE(kept.has_value());
  EXPECT_EQ(kept->version, 1u);
  EXPECT_EQ(store->get("some").version, 1u);
}

TEST_P(StoreTest, AnUpdateThatThrowsWritesNothingAndLeavesTheStoreUsable) {
  auto store = open();
  store->set({.key = "k", .metadata = {{"n", 1}}});
  EXPECT_THROW(store->update("k",
                             [](std::optional<Record>) -> std::optional<Record> {
                               throw std::runtime_error("no");
                             }),
               std::runtime_error);
  EXPECT_EQ(store->get("k").version, 1u);
  store->set({.key = "k", .metadata = {{"n", 2}}});
  EXPECT_EQ(store->get("k").metadata["n"], 2);
}

TEST_P(StoreTest, FinishManyRecordsOutcomesButLeavesFinishedRecords) {
  auto store = open();
  const Record launched = store->set(
      {.key = "ok", .status = Status::running, .metadata = {{"function", "f"}}, .progress = 0.5});
  store->set({.key = "bad", .status = Status::running});
  store->set({.key = "cancelled", .status = Status::cancelled, .completed = ms_ago(1s)});
  const nlohmann::json value = {{"answer", 42}};
  const strand::ErrorInfo error{"std::out_of_range", "index 7"};
  const auto at = ms_ago(0ms);
  const std::vector<strand::Outcome> outcomes = {
      {.key = "ok", .value = &value, .completed = at},
      {.key = "bad", .error = &error, .completed = at},
      {.key = "cancelled", .value = &value, .completed = at},
      {.key = "missing", .value = &value, .completed = at},
  };
  EXPECT_EQ(store->finish_many(outcomes), (std::vector<bool>{true, true, false, true}));

  const Record ok = store->get("ok");
  EXPECT_EQ(ok.status, Status::completed);
  EXPECT_EQ(ok.value, value);
  EXPECT_EQ(ok.progress, 1.0);
  EXPECT_EQ(ok.completed, at);
  EXPECT_EQ(ok.metadata, (nlohmann::json{{"function", "f"}})) << "the rest is kept";
  EXPECT_EQ(ok.version, launched.version + 1);
  EXPECT_EQ(ok.created, launched.created);
  const Record bad = store->get("bad");
  EXPECT_EQ(bad.status, Status::failed);
  EXPECT_EQ(bad.error, error);
  EXPECT_EQ(bad.value, nlohmann::json());
  const Record cancelled = store->get("cancelled");
  EXPECT_EQ(cancelled.status, Status::cancelled);
  EXPECT_EQ(cancelled.value, nlohmann::json());
  EXPECT_EQ(cancelled.version, 1u);
  const Record missing = store->get("missing");
  EXPECT_EQ(missing.status, Status::completed) << "a missing record is created";
  EXPECT_EQ(missing.version, 1u);
}

TEST_P(StoreTest, WriteManySetsTheRecordsThenRecordsTheOutcomes) {
  auto store = open();
  store->set({.key = "old", .status = Status::running});
  std::vector<Record> records = {{.key = "a", .status = Status::running},
                                 {.key = "old", .status = Status::running, .progress = 0.25}};
  const nlohmann::json value = 3;
  const std::vector<strand::Outcome> outcomes = {{.key = "a", .value = &value, .completed = {}}};
  EXPECT_EQ(store->write_many(records, outcomes), std::vector<bool>{true});
  EXPECT_EQ(records[0].version, 1u) << "stamped in place, as set() returns it";
  EXPECT_NE(records[0].created, Record::time_point{});
  EXPECT_EQ(records[1].version, 2u);
  const Record a = store->get("a");
  EXPECT_EQ(a.status, Status::completed) << "the outcome comes after the record it finishes";
  EXPECT_EQ(a.value, 3);
  EXPECT_EQ(a.version, 2u);
  EXPECT_EQ(store->get("old").progress, 0.25);
  EXPECT_EQ(store->write_many({}, {}), std::vector<bool>{});
}

TEST_P(StoreTest, OnlyTheSqliteStoreGroupsWrites) {
  EXPECT_EQ(open()->groups_writes(), std::string(GetParam().name) == "sqlite");
}

TEST_P(StoreTest, WaitTerminalWakesForAnotherThreadsWrite) {
  auto store = open();
  store->set({.key = "job", .status = Status::running});
  const auto start = std::chrono::steady_clock::now();
  std::jthread writer([&] {
    store->set({.key = "job", .status = Status::running, .progress = 0.5});
    store->set({.key = "job", .status = Status::completed, .value = 7});
  });
  const Record r = store->wait_terminal("job", start + 5s);
  EXPECT_EQ(r.status, Status::completed);
  EXPECT_EQ(r.value, 7);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s) << "woken well before the deadline";
}

TEST_P(StoreTest, WaitTerminalTimesOutWithThePendingRecord) {
  auto store = open();
  const auto start = std::chrono::steady_clock::now();
  const Record r = store->wait_terminal("never", start + 30ms);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 30ms);
  EXPECT_EQ(r.status, Status::pending);
  EXPECT_EQ(r.key, "never");
  store->set({.key = "running", .status = Status::running});
  EXPECT_EQ(store->wait_terminal("running", std::chrono::steady_clock::now() + 10ms).status,
            Status::running);
}

TEST_P(StoreTest, AnInvalidKeyIsRefusedByEveryOperation) {
  auto store = open();
  const std::string message = "strand: invalid store key \"a/b\": it contains a path separator";
  const auto expect_invalid = [&](const std::function<void()>& op) {
    try {
      op();
      ADD_FAILURE() << "expected InvalidKey";
    } catch (const strand::InvalidKey& e) {
      EXPECT_EQ(e.what(), message);
    }
  };
  expect_invalid([&] { (void)store->find("a/b"); });
  expect_invalid([&] { (void)store->get("a/b"); });
  expect_invalid([&] { store->set({.key = "a/b"}); });
  expect_invalid([&] { store->update("a/b", [](std::optional<Record> r) { return r; }); });
  expect_invalid([&] { store->erase("a/b"); });
  expect_invalid([&] { store->wait_terminal("a/b", std::chrono::steady_clock::now()); });
  expect_invalid([&] {
    const strand::Outcome outcome{.key = "a/b"};
    store->finish_many(std::span(&outcome, 1));
  });
  expect_invalid([&] {
    Record r{.key = "a/b"};
    store->write_many(std::span(&r, 1), {});
  });
  EXPECT_EQ(store->size(), 0u);
}

TEST_P(StoreTest, CreateKeyGivesDistinctValidKeys) {
  auto store = open();
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    const std::string key = store->create_key();
    EXPECT_EQ(key.size(), 32u);
    EXPECT_NO_THROW(strand::validate_key(key));
    seen.insert(key);
  }
  EXPECT_EQ(seen.size(), 100u);
  EXPECT_EQ(store->size(), 0u) << "create_key writes nothing";
}

TEST_P(StoreTest, TheUrlReopensTheSameStore) {
  auto store = open();
  store->set({.key = "shared", .status = Status::completed, .value = "yes"});
  auto again = strand::open_store(store->url(), {.format = GetParam().format});
  EXPECT_EQ(again->url(), store->url());
  if (std::string(GetParam().name) != "memory") {  // memory: is a new store each time
    EXPECT_EQ(again->get("shared").value, "yes");
  }
}

INSTANTIATE_TEST_SUITE_P(
    Stores, StoreTest,
    ::testing::Values(Kind{"memory", Format::json}, Kind{"filesystem", Format::json},
                      Kind{"filesystem", Format::msgpack}, Kind{"sqlite", Format::json},
                      Kind{"sqlite", Format::msgpack}, Kind{"redis", Format::json},
                      Kind{"redis", Format::msgpack}),
    [](const ::testing::TestParamInfo<Kind>& info) {
      return std::string(info.param.name) + "_" + std::string(strand::to_string(info.param.format));
    });

}  // namespace
