// What is particular to MemoryStore (the Store and JobQueue contracts it shares with the other
// stores are in store_test.cpp and job_queue_test.cpp).
#include "strand/memory_store.hpp"

#include <gtest/gtest.h>

#include "strand/job_queue.hpp"

namespace {

TEST(MemoryStore, IsThisProcessOnly) {
  const auto store = strand::MemoryStore::open();
  EXPECT_EQ(store->url(), "memory:");
  EXPECT_FALSE(store->shared_across_processes());
}

TEST(MemoryStore, IsItsOwnJobQueueOnTheSystemClock) {
  const auto store = strand::MemoryStore::open();
  const auto queue = strand::job_queue(store);
  EXPECT_EQ(queue.get(), dynamic_cast<strand::JobQueue*>(store.get()));
  const auto before = std::chrono::system_clock::now();
  const auto now = queue->now();
  EXPECT_GE(now, before);
  EXPECT_LE(now, std::chrono::system_clock::now());
}

TEST(MemoryStore, HandlesShareNothingBetweenOpens) {
  const auto a = strand::MemoryStore::open();
  const auto b = strand::MemoryStore::open();
  a->set({.key = "k", .status = strand::Status::completed});
  EXPECT_TRUE(a->find("k"));
  EXPECT_FALSE(b->find("k"));
}

}  // namespace
