#include "strand/target.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

#include "strand/runner.hpp"

namespace strand {
namespace {

TEST(Target, NamesReadBack) {
  for (Target t : all_targets()) EXPECT_EQ(parse_target(to_string(t)), t);
  EXPECT_EQ(to_string(Target::sync), "sync");
  EXPECT_EQ(to_string(Target::thread), "thread");
  EXPECT_EQ(to_string(Target::pool), "pool");
  EXPECT_EQ(to_string(Target::process), "process");
  EXPECT_EQ(to_string(Target::coroutine), "coroutine");
}

TEST(Target, AnUnknownNameListsEveryValidTarget) {
  try {
    (void)parse_target("nope");
    FAIL() << "an unknown target must throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(),
                 "strand: unknown task target \"nope\"; valid targets are: sync, "
                 "thread, pool, process, coroutine");
  }
}

TEST(Target, AsTaskWithAnUnknownStringThrows) {
  try {
    (void)as_task("nope", [] { return 1; });
    FAIL() << "as_task(\"nope\") must throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(),
                 "strand: unknown task target \"nope\"; valid targets are: sync, "
                 "thread, pool, process, coroutine");
  }
  EXPECT_THROW((void)as_task("", [] {}), std::invalid_argument);
  EXPECT_THROW((void)as_task("Thread", [] {}), std::invalid_argument);  // names are exact
}

TEST(Target, AsTaskWithEachStringRunsThere) {
  EXPECT_EQ(as_task("sync", [] { return std::this_thread::get_id(); })().get(),
            std::this_thread::get_id());
  EXPECT_NE(as_task("thread", [] { return std::this_thread::get_id(); })().get(),
            std::this_thread::get_id());
  EXPECT_TRUE(as_task("pool", [] { return default_pool().is_worker_thread(); })().get());
  EXPECT_TRUE(as_task("coroutine", [] { return EventLoop::current() != nullptr; })().get());
  EXPECT_TRUE(as_task(coroutine, [] { return EventLoop::current() != nullptr; })().get());
}

}  // namespace
}  // namespace strand
