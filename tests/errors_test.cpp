#include "strand/errors.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

#include "support.hpp"

namespace strand {
namespace {

using namespace std::chrono_literals;

TEST(Errors, MessagesSayWhatHappened) {
  EXPECT_STREQ(Timeout(10ms).what(), "strand: timed out after 10ms waiting for a task");
  EXPECT_STREQ(Timeout(2s).what(), "strand: timed out after 2s waiting for a task");
  EXPECT_STREQ(Timeout(1500us).what(), "strand: timed out after 1500us waiting for a task");
  EXPECT_STREQ(Cancelled().what(), "strand: the task was cancelled");
  EXPECT_STREQ(NotReady().what(), "strand: the task has not finished yet");
  EXPECT_STREQ(InvalidHandle().what(), "strand: operation on an empty strand::Handle");
  EXPECT_STREQ(ExecutorShutDown("my pool").what(),
               "strand: cannot submit to my pool: it has been shut down");
  EXPECT_STREQ(AlreadySatisfied().what(), "strand: the promise was already satisfied");
  EXPECT_STREQ(BrokenPromise().what(), "strand: the promise was destroyed before it was satisfied");
}

TEST(Errors, RemoteErrorKeepsTypeNameAndMessage) {
  RemoteError e("myapp::QuotaExceeded", "over by 3");
  EXPECT_EQ(e.type_name(), "myapp::QuotaExceeded");
  EXPECT_EQ(e.message(), "over by 3");
  EXPECT_STREQ(e.what(), "myapp::QuotaExceeded: over by 3");
}

TEST(Errors, AllAreStrandErrors) {
  auto is_strand_error = [](auto&& e) {
    try {
      throw e;
    } catch (const Error&) {
      return true;
    } catch (...) {
      return false;
    }
  };
  EXPECT_TRUE(is_strand_error(Timeout(1ms)));
  EXPECT_TRUE(is_strand_error(Cancelled()));
  EXPECT_TRUE(is_strand_error(NotReady()));
  EXPECT_TRUE(is_strand_error(RemoteError("a", "b")));
  EXPECT_TRUE(is_strand_error(InvalidHandle()));
  EXPECT_TRUE(is_strand_error(ExecutorShutDown("p")));
  EXPECT_TRUE(is_strand_error(BrokenPromise()));
}

struct CustomFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

TEST(Errors, DescribeNamesTheDynamicType) {
  EXPECT_EQ(describe(std::make_exception_ptr(std::out_of_range("index 7"))),
            "std::out_of_range: index 7");
  EXPECT_EQ(describe(std::make_exception_ptr(CustomFailure("bad"))),
            "strand::(anonymous namespace)::CustomFailure: bad");
  EXPECT_EQ(describe(std::make_exception_ptr(42)), "int (not a std::exception)");
  EXPECT_EQ(describe(nullptr), "no exception");
}

TEST(Errors, ReporterReceivesReportsAndIsRestored) {
  {
    testing::ReportCapture capture;
    report_error("here", std::make_exception_ptr(std::runtime_error("boom")));
    const auto reports = capture.reports();
    ASSERT_EQ(reports.size(), 1U);
    EXPECT_EQ(reports[0].where, "here");
    EXPECT_EQ(reports[0].description, "std::runtime_error: boom");
  }
  // The default reporter is back: it writes to stderr.
  ::testing::internal::CaptureStderr();
  report_error("there", std::make_exception_ptr(std::logic_error("oops")));
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "there: std::logic_error: oops\n");
}

TEST(Errors, AThrowingReporterIsIgnored) {
  auto previous = set_error_reporter(
      [](std::string_view, std::exception_ptr) { throw std::runtime_error("reporter broke"); });
  EXPECT_NO_THROW(report_error("x", std::make_exception_ptr(std::runtime_error("y"))));
  set_error_reporter(std::move(previous));
}

}  // namespace
}  // namespace strand
