#include "strand/errors.hpp"

#include "fork_hooks.hpp"

#include <cxxabi.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <sstream>
#include <typeinfo>

namespace strand {
namespace {

// "10ms", "1.5s", "250us": the shortest exact-enough rendering of a waited time.
std::string format_duration(std::chrono::nanoseconds d) {
  using namespace std::chrono;
  const auto ns = d.count();
  std::ostringstream out;
  if (ns % 1'000'000'000 == 0 && ns != 0) {
    out << ns / 1'000'000'000 << "s";
  } else if (ns % 1'000'000 == 0) {
    out << ns / 1'000'000 << "ms";
  } else if (ns % 1'000 == 0) {
    out << ns / 1'000 << "us";
  } else {
    out << ns << "ns";
  }
  return out.str();
}

std::string demangle(const char* name) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> out(abi::__cxa_demangle(name, nullptr, nullptr, &status),
                                             std::free);
  return status == 0 && out ? std::string(out.get()) : std::string(name);
}

void default_reporter(std::string_view where, std::exception_ptr error) {
  const std::string text = describe(error);
  std::fprintf(stderr, "%.*s: %s\n", static_cast<int>(where.size()), where.data(), text.c_str());
}

struct ReporterSlot {
  std::mutex mutex;
  ErrorReporter reporter;
};
ReporterSlot& reporter_slot() {
  static ReporterSlot slot;  // constructed on first use, before any reporter can be called
  return slot;
}

// Every program that links strand reaches this file (a Handle can throw), so the fork handlers are
// registered before any fork the program makes.
[[maybe_unused]] const bool fork_handlers_installed = (detail::install_fork_handlers(), true);

}  // namespace

namespace detail {
void lock_error_reporter() noexcept {
  reporter_slot().mutex.lock();
}
void unlock_error_reporter() noexcept {
  reporter_slot().mutex.unlock();
}
}  // namespace detail

Timeout::Timeout(std::chrono::nanoseconds waited)
    : Error("strand: timed out after " + format_duration(waited) + " waiting for a task") {}
Cancelled::Cancelled() : Error("strand: the task was cancelled") {}
NotReady::NotReady() : Error("strand: the task has not finished yet") {}
RemoteError::RemoteError(std::string type_name, std::string message)
    : Error(type_name + ": " + message),
      type_name_(std::move(type_name)),
      message_(std::move(message)) {}
InvalidHandle::InvalidHandle() : Error("strand: operation on an empty strand::Handle") {}
ExecutorShutDown::ExecutorShutDown(std::string_view executor_name)
    : Error("strand: cannot submit to " + std::string(executor_name) + ": it has been shut down") {}
AlreadySatisfied::AlreadySatisfied() : Error("strand: the promise was already satisfied") {}
BrokenPromise::BrokenPromise()
    : Error("strand: the promise was destroyed before it was satisfied") {}

ErrorReporter set_error_reporter(ErrorReporter reporter) {
  auto& slot = reporter_slot();
  std::lock_guard lock(slot.mutex);
  std::swap(slot.reporter, reporter);
  return reporter;
}

void report_error(std::string_view where, std::exception_ptr error) noexcept {
  try {
    ErrorReporter reporter;
    {
      auto& slot = reporter_slot();
      std::lock_guard lock(slot.mutex);
      reporter = slot.reporter;
    }
    if (reporter) {
      reporter(where, error);
    } else {
      default_reporter(where, error);
    }
  } catch (...) {  // a reporter that throws has nowhere left to report to
  }
}

std::string describe(std::exception_ptr error) {
  if (!error) return "no exception";
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return demangle(typeid(e).name()) + ": " + e.what();
  } catch (...) {
    const std::type_info* type = abi::__cxa_current_exception_type();
    return type != nullptr ? demangle(type->name()) + " (not a std::exception)"
                           : std::string("unknown exception");
  }
}

}  // namespace strand
