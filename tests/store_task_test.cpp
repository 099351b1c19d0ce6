// StoreTaskWriter writes calls as jobs; StoreTaskReader runs them; as_task("store", ...) is the
// writer by its target name.
#include "strand/store_task.hpp"

#include <gtest/gtest.h>

#include <string>
#include <tuple>
#include <vector>

#include "strand/memory_store.hpp"
#include "strand/runner.hpp"

namespace {

using namespace std::chrono_literals;
using strand::Status;

struct Point {
  int x = 0;
  int y = 0;
  friend bool operator==(const Point&, const Point&) = default;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Point, x, y)

class StoreTaskTest : public ::testing::Test {
 protected:
  StoreTaskTest() {
    registry_.add("add", [](int a, int b) { return a + b; });
    registry_.add("flip", [](Point p) { return Point{p.y, p.x}; });
  }
  std::shared_ptr<strand::Store> store_ = strand::MemoryStore::open();
  strand::Registry registry_;
};

TEST_F(StoreTaskTest, WriterWritesTheCallAsAQueuedJob) {
  strand::StoreTaskWriter<Point> flip(store_, "flip", {.queue = "geometry", .priority = 2});
  auto handle = flip(Point{1, 2});
  const strand::Record r = store_->get(handle.key());
  EXPECT_EQ(r.status, Status::queued);
  EXPECT_EQ(r.job->function, "flip");
  EXPECT_EQ(r.job->args, nlohmann::json::parse(R"([{"x":1,"y":2}])"));
  EXPECT_EQ(r.job->queue, "geometry");
  EXPECT_EQ(r.job->priority, 2);
  EXPECT_EQ(handle.status(), Status::queued);
  EXPECT_THROW((void)handle.get_result(), strand::NotReady);
}

TEST_F(StoreTaskTest, ReaderRunsWhatTheWriterWrote) {
  strand::StoreTaskWriter<Point> flip(store_, "flip");
  strand::StoreTaskReader reader(store_, registry_);
  EXPECT_FALSE(reader.listening());
  reader.listen();
  EXPECT_TRUE(reader.listening());
  EXPECT_EQ(flip(Point{1, 2}).get_result(5s), (Point{2, 1}));
  reader.stop();
  EXPECT_FALSE(reader.listening());
}

TEST_F(StoreTaskTest, UntypedWriterReturnsDocuments) {
  strand::StoreTaskWriter add(store_, "add");  // StoreTaskWriter<nlohmann::json>
  static_assert(std::is_same_v<decltype(add), strand::StoreTaskWriter<nlohmann::json>>);
  auto handle = add(2, 3);
  strand::StoreTaskReader reader(store_, registry_);
  reader.listen();
  EXPECT_EQ(handle.get_result(5s), 5);
}

TEST_F(StoreTaskTest, MapWritesManyCallsAtOnce) {
  strand::StoreTaskWriter<int> add(store_, "add");
  const std::vector<std::tuple<int, int>> calls{{1, 2}, {3, 4}, {5, 6}};
  auto handles = add.map(calls);
  ASSERT_EQ(handles.size(), 3u);
  strand::StoreTaskReader reader(store_, registry_, {.concurrency = 2});
  reader.listen();
  EXPECT_EQ(handles[0].get_result(5s), 3);
  EXPECT_EQ(handles[1].get_result(5s), 7);
  EXPECT_EQ(handles[2].get_result(5s), 11);
}

TEST_F(StoreTaskTest, WithGivesAWriterWithOtherOptions) {
  strand::StoreTaskWriter<int> add(store_, "add");
  auto later = add.with({.delay = 1h});
  const auto r = store_->get(later(1, 1).key());
  EXPECT_GT(r.job->run_at, std::chrono::system_clock::now() + 59min);
  EXPECT_EQ(later.function(), "add");
}

TEST_F(StoreTaskTest, CancelledBeforeAWorkerTookItNeverRuns) {
  strand::StoreTaskWriter<int> add(store_, "add");
  auto handle = add(1, 2);
  EXPECT_TRUE(handle.cancel());
  auto after = add(3, 4);
  strand::StoreTaskReader reader(store_, registry_);
  reader.listen();
  EXPECT_EQ(after.get_result(5s), 7);  // the queue has moved past the cancelled job
  EXPECT_THROW((void)handle.get_result(), strand::Cancelled);
}

TEST_F(StoreTaskTest, AsTaskStoreIsAWriter) {
  auto add = strand::as_task<int>("store", store_, "add");
  static_assert(std::is_same_v<decltype(add), strand::StoreTaskWriter<int>>);
  auto handle = add(20, 22);
  strand::StoreTaskReader reader(store_, registry_);
  reader.listen();
  EXPECT_EQ(handle.get_result(5s), 42);
}

TEST_F(StoreTaskTest, BadTargetOrNameIsRejected) {
  try {
    (void)strand::as_task("thread", store_, "add");
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(
        e.what(),
        "strand: a store and a function name make a \"store\" task, not a \"thread\" task");
  }
  try {
    strand::StoreTaskWriter<int> nameless(store_, "");
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "strand: a store task needs a function name");
  }
}

TEST_F(StoreTaskTest, ReattachingByKeyWorksFromAnotherHandle) {
  strand::StoreTaskWriter<int> add(store_, "add");
  const std::string key = add(1, 1).key();
  strand::StoreTaskReader reader(store_, registry_);
  reader.listen();
  EXPECT_EQ(strand::ComputationHandle<int>(key, store_).get_result(5s), 2);
}

}  // namespace
