#include "strand/promise.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <stdexcept>
#include <thread>

namespace strand {
namespace {

TEST(Promise, SetValueCompletesTheHandle) {
  Promise<std::unique_ptr<int>> p;
  auto h = p.handle();
  EXPECT_EQ(h.status(), Status::pending);
  std::thread([p = std::move(p)]() mutable { p.set_value(std::make_unique<int>(4)); }).join();
  EXPECT_EQ(*h.get(), 4);  // move-only values are read by reference
}

TEST(Promise, StartsInTheStatusAskedFor) {
  Promise<int> p(Status::queued);
  EXPECT_EQ(p.handle().status(), Status::queued);
  EXPECT_TRUE(p.set_running());
  EXPECT_EQ(p.handle().status(), Status::running);
}

TEST(Promise, SecondSetIsAnError) {
  Promise<int> p;
  p.set_value(1);
  try {
    p.set_value(2);
    FAIL() << "a second set_value must throw";
  } catch (const AlreadySatisfied& e) {
    EXPECT_STREQ(e.what(), "strand: the promise was already satisfied");
  }
  EXPECT_THROW(p.set_exception(std::make_exception_ptr(std::runtime_error("x"))), AlreadySatisfied);
  EXPECT_EQ(p.handle().get(), 1);
}

TEST(Promise, DestroyedUnsatisfiedBreaksTheHandle) {
  Handle<int> h;
  {
    Promise<int> p;
    h = p.handle();
  }
  try {
    h.get();
    FAIL() << "an abandoned promise must fail its handle";
  } catch (const BrokenPromise& e) {
    EXPECT_STREQ(e.what(), "strand: the promise was destroyed before it was satisfied");
  }
  EXPECT_EQ(h.status(), Status::failed);
}

TEST(Promise, CancellingTheHandleStopsTheProducer) {
  Promise<int> p;
  Handle<int> h = p.handle();
  bool stopped = false;
  std::stop_callback on_stop(p.stop_token(), [&] { stopped = true; });
  EXPECT_TRUE(h.cancel());
  EXPECT_TRUE(stopped);
  EXPECT_TRUE(p.cancelled());
  EXPECT_FALSE(p.set_running());
  EXPECT_FALSE(p.set_value(3));  // dropped, not an error
  EXPECT_THROW(h.get(), Cancelled);
}

struct ThrowsOnCopy {
  ThrowsOnCopy() = default;
  ThrowsOnCopy(const ThrowsOnCopy&) { throw std::runtime_error("cannot copy"); }
};

TEST(Promise, AValueThatThrowsWhileMadeFailsTheHandle) {
  Promise<ThrowsOnCopy> p;
  const ThrowsOnCopy original;
  EXPECT_THROW(p.set_value(original), std::runtime_error);
  try {
    p.handle().get();
    FAIL() << "the handle must fail";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "cannot copy");
  }
}

TEST(Promise, BadArgumentsAreRefused) {
  try {
    Promise<int> p(Status::completed);
    FAIL() << "a promise cannot start finished";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(),
                 "strand::Promise: a promise starts pending, queued or running, not finished");
  }
  Promise<int> p;
  try {
    p.set_exception(nullptr);
    FAIL() << "a null exception_ptr must be refused";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "strand::Promise::set_exception: null exception_ptr");
  }
  p.set_value(1);  // still usable
  EXPECT_EQ(p.handle().get(), 1);
}

TEST(Promise, VoidPromise) {
  Promise<> p;
  Handle<void> h = p.handle();
  p.set_value();
  EXPECT_NO_THROW(h.get());
  EXPECT_EQ(h.status(), Status::completed);
}

TEST(Promise, MovedFromPromiseIsEmpty) {
  Promise<int> a;
  Handle<int> h = a.handle();
  Promise<int> b = std::move(a);
  EXPECT_THROW((void)a.handle(), InvalidHandle);  // NOLINT(bugprone-use-after-move)
  b.set_value(8);
  EXPECT_EQ(h.get(), 8);
}

}  // namespace
}  // namespace strand
