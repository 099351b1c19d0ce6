#include "strand/middleware.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <sstream>

namespace strand {

void Middleware::before(const ComputationInfo&) {}
void Middleware::after(const ComputationInfo&, const nlohmann::json&) {}
void Middleware::on_error(const ComputationInfo&, const ErrorInfo&) {}

namespace {

std::string window_text(std::chrono::nanoseconds window) {
  using namespace std::chrono;
  std::ostringstream out;
  if (window % seconds(1) == nanoseconds(0)) {
    out << duration_cast<seconds>(window).count() << "s";
  } else {
    out << duration_cast<milliseconds>(window).count() << "ms";
  }
  return out.str();
}

spdlog::level::level_enum to_spdlog(LogLevel level) {
  switch (level) {
    case LogLevel::trace:
      return spdlog::level::trace;
    case LogLevel::debug:
      return spdlog::level::debug;
    case LogLevel::info:
      return spdlog::level::info;
    case LogLevel::warn:
      return spdlog::level::warn;
    case LogLevel::error:
      return spdlog::level::err;
  }
  return spdlog::level::info;
}

std::shared_ptr<spdlog::logger> logger_named(const std::string& name) {
  if (auto logger = spdlog::get(name)) return logger;
  try {
    return spdlog::stderr_color_mt(name);
  } catch (const spdlog::spdlog_ex&) {  // made by another thread meanwhile
    return spdlog::get(name);
  }
}

double seconds_of(std::chrono::nanoseconds d) {
  return std::chrono::duration<double>(d).count();
}

}  // namespace

RateLimited::RateLimited(std::size_t limit, std::chrono::nanoseconds window)
    : Rejected("strand: rate limit exceeded: at most " + std::to_string(limit) +
               " computations per " + window_text(window)) {}

LoggingMiddleware::LoggingMiddleware(LogLevel level, std::string logger)
    : level_(level), logger_(std::move(logger)) {
  (void)logger_named(logger_);
}

void LoggingMiddleware::before(const ComputationInfo& info) {
  logger_named(logger_)->debug("computation {} ({}) launched on {}", info.key, info.function,
                               to_string(info.backend));
}

void LoggingMiddleware::after(const ComputationInfo& info, const nlohmann::json&) {
  logger_named(logger_)->log(to_spdlog(level_), "computation {} ({}) completed in {:.3f}s",
                             info.key, info.function, seconds_of(info.elapsed));
}

void LoggingMiddleware::on_error(const ComputationInfo& info, const ErrorInfo& error) {
  logger_named(logger_)->error("computation {} ({}) failed after {:.3f}s: {}: {}", info.key,
                               info.function, seconds_of(info.elapsed), error.type, error.message);
}

MetricsMiddleware::Stats MetricsMiddleware::get_stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

void MetricsMiddleware::before(const ComputationInfo&) {
  std::lock_guard lock(mutex_);
  ++stats_.total;
}

void MetricsMiddleware::after(const ComputationInfo& info, const nlohmann::json&) {
  std::lock_guard lock(mutex_);
  ++stats_.completed;
  total_seconds_ += seconds_of(info.elapsed);
  stats_.avg_duration = total_seconds_ / static_cast<double>(stats_.completed + stats_.failed);
}

void MetricsMiddleware::on_error(const ComputationInfo& info, const ErrorInfo&) {
  std::lock_guard lock(mutex_);
  ++stats_.failed;
  total_seconds_ += seconds_of(info.elapsed);
  stats_.avg_duration = total_seconds_ / static_cast<double>(stats_.completed + stats_.failed);
}

RateLimitMiddleware::RateLimitMiddleware(std::size_t limit, std::chrono::nanoseconds window)
    : limit_(limit), window_(window) {}

void RateLimitMiddleware::before(const ComputationInfo&) {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(mutex_);
  while (!recent_.empty() && now - recent_.front() >= window_) recent_.pop_front();
  if (recent_.size() >= limit_) throw RateLimited(limit_, window_);
  recent_.push_back(now);
}

}  // namespace strand
