// A job's part of a record: it survives both formats whole, and a job that does not decode says
// why.
#include "strand/job.hpp"

#include <gtest/gtest.h>

#include "strand/store.hpp"

namespace {

using namespace std::chrono_literals;

strand::Job full_job() {
  const auto t =
      std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
  strand::Job job;
  job.function = "resize";
  job.args = {"a.png", 640, {{"crop", true}}};
  job.queue = "images";
  job.priority = 3;
  job.max_retries = 4;
  job.retry_backoff = 250ms;
  job.timeout = 5s;
  job.idempotency_key = "img-1";
  job.failures = 1;
  job.run_at = t;
  job.token = 2;
  job.lease_expires = t + 30s;
  job.worker = "host:42";
  job.history = {{.token = 1,
                  .worker = "host:41",
                  .started = t - 2s,
                  .ended = t - 1s,
                  .outcome = "failed",
                  .error = strand::ErrorInfo{"std::runtime_error", "disk full"}},
                 {.token = 2, .worker = "host:42", .started = t}};
  return job;
}

TEST(Job, RoundTripsThroughBothFormatsInsideARecord) {
  strand::Record r;
  r.key = "job-1";
  r.status = strand::Status::running;
  r.job = full_job();
  for (const auto format : {strand::Format::json, strand::Format::msgpack}) {
    const auto bytes = strand::encode(r, format);
    EXPECT_EQ(strand::decode<strand::Record>(bytes, format), r);
  }
}

TEST(Job, ARecordWithoutAJobHasNone) {
  strand::Record r;
  r.key = "plain";
  const auto back = nlohmann::json(r).get<strand::Record>();
  EXPECT_FALSE(back.job);
  EXPECT_FALSE(nlohmann::json(r).contains("job"));
}

TEST(Job, ArgumentsThatAreNotAnArrayDoNotDecode) {
  nlohmann::json doc = full_job();
  doc["args"] = {{"x", 1}};
  try {
    (void)doc.get<strand::Job>();
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "a job's args must be an array");
  }
}

TEST(Job, AJobWithoutAFunctionDoesNotDecode) {
  nlohmann::json doc = full_job();
  doc.erase("function");
  EXPECT_THROW((void)doc.get<strand::Job>(), nlohmann::json::out_of_range);
}

}  // namespace
