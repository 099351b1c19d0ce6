// strand/middleware.hpp — hooks around every computation of an async_compute function.
//
//   auto metrics = std::make_shared<strand::MetricsMiddleware>();
//   auto fn = strand::async_compute(f, {.middleware = {metrics,
//                                       std::make_shared<strand::LoggingMiddleware>()}});
//   ...
//   metrics->get_stats().completed;
//
// `before` runs when a computation is launched, in the launching process; `after` and `on_error`
// run when it ends, also in the launching process, whatever the backend: for the process backend
// the result comes back to the parent first, so a MetricsMiddleware counts computations done in
// child processes too. Hooks may run on several threads at once.
//
// A hook that throws is reported (strand::report_error) and the computation goes on, with one
// exception by design: `before` throwing a strand::Rejected (RateLimited is one) refuses the
// computation, which then reads FAILED with that error.
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "strand/errors.hpp"
#include "strand/serialize.hpp"
#include "strand/target.hpp"

namespace strand {

struct ComputationInfo {
  std::string key;
  std::string function;  // ComputeOptions::name
  Target backend = Target::thread;
  std::chrono::nanoseconds elapsed{};  // in after/on_error: how long the computation ran
};

class Middleware {
 public:
  virtual ~Middleware() = default;
  virtual void before(const ComputationInfo& info);
  virtual void after(const ComputationInfo& info, const nlohmann::json& result);
  virtual void on_error(const ComputationInfo& info, const ErrorInfo& error);
};

// Thrown by Middleware::before to refuse a computation.
class Rejected : public Error {
 public:
  using Error::Error;
};

// More computations than a RateLimitMiddleware allows.
class RateLimited : public Rejected {
 public:
  RateLimited(std::size_t limit, std::chrono::nanoseconds window);
};

enum class LogLevel { trace, debug, info, warn, error };

// One log line per event through spdlog: launched (debug), completed with its duration (`level`),
// failed with the error (error).
class LoggingMiddleware : public Middleware {
 public:
  // `logger` names an spdlog logger; it is made (colour, stderr) if it does not exist yet.
  explicit LoggingMiddleware(LogLevel level = LogLevel::info, std::string logger = "strand");
  void before(const ComputationInfo& info) override;
  void after(const ComputationInfo& info, const nlohmann::json& result) override;
  void on_error(const ComputationInfo& info, const ErrorInfo& error) override;

 private:
  LogLevel level_;
  std::string logger_;
};

// Counts computations and their durations.
class MetricsMiddleware : public Middleware {
 public:
  struct Stats {
    std::size_t total = 0;  // launched
    std::size_t completed = 0;
    std::size_t failed = 0;
    double avg_duration = 0;  // seconds, over completed and failed
  };
  [[nodiscard]] Stats get_stats() const;

  void before(const ComputationInfo& info) override;
  void after(const ComputationInfo& info, const nlohmann::json& result) override;
  void on_error(const ComputationInfo& info, const ErrorInfo& error) override;

 private:
  mutable std::mutex mutex_;
  Stats stats_;
  double total_seconds_ = 0;
};

// At most `limit` computations launched in any `window`; the next one fails with RateLimited.
class RateLimitMiddleware : public Middleware {
 public:
  explicit RateLimitMiddleware(std::size_t limit,
                               std::chrono::nanoseconds window = std::chrono::minutes(1));
  void before(const ComputationInfo& info) override;

 private:
  std::size_t limit_;
  std::chrono::nanoseconds window_;
  std::mutex mutex_;
  std::deque<std::chrono::steady_clock::time_point> recent_;
};

}  // namespace strand
