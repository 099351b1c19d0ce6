// strand/errors.hpp — the exceptions strand itself throws.
//
// All derive from strand::Error (a std::runtime_error), so `catch (const strand::Error&)` separates
// strand's own conditions from whatever a task threw. A task's own exception is never wrapped: it
// reaches `get()` as itself.
#pragma once

#include <chrono>
#include <exception>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace strand {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A wait with a time limit ran out before the task finished.
class Timeout : public Error {
 public:
  explicit Timeout(std::chrono::nanoseconds waited);
  explicit Timeout(const std::string& what) : Error(what) {}
};

// The task was cancelled; it produced no value.
class Cancelled : public Error {
 public:
  Cancelled();
  explicit Cancelled(const std::string& what) : Error(what) {}
};

// A non-blocking read (`try_get` on a store handle, `get_result()` without a timeout) found the
// task unfinished.
class NotReady : public Error {
 public:
  NotReady();
  explicit NotReady(const std::string& what) : Error(what) {}
};

// An exception that crossed a process or machine boundary and has no local type to become: it keeps
// the original type name and message. `what()` is "<type name>: <message>".
class RemoteError : public Error {
 public:
  RemoteError(std::string type_name, std::string message);
  [[nodiscard]] const std::string& type_name() const noexcept { return type_name_; }
  [[nodiscard]] const std::string& message() const noexcept { return message_; }

 private:
  std::string type_name_;
  std::string message_;
};

// An operation on a default-constructed (empty) Handle or a Promise whose handle was never made.
class InvalidHandle : public Error {
 public:
  InvalidHandle();
};

// Work was submitted to an executor that has been shut down.
class ExecutorShutDown : public Error {
 public:
  explicit ExecutorShutDown(std::string_view executor_name);
};

// A Promise was satisfied twice.
class AlreadySatisfied : public Error {
 public:
  AlreadySatisfied();
};

// A Promise was destroyed before it was satisfied.
class BrokenPromise : public Error {
 public:
  BrokenPromise();
};

// Where strand reports an exception that has nobody to go to: a completion callback that threw, an
// `on_error` callback that threw, a fire-and-forget pool job that threw. `where` says which. The
// default reporter writes one line to stderr. The reporter must be thread-safe; it is called on the
// thread where the exception happened.
using ErrorReporter = std::function<void(std::string_view where, std::exception_ptr error)>;

// Installs `reporter` (an empty function restores the default) and returns the previous one.
ErrorReporter set_error_reporter(ErrorReporter reporter);

// Sends `error` to the installed reporter. Never throws: a reporter that throws is ignored.
void report_error(std::string_view where, std::exception_ptr error) noexcept;

// "<type name>: <what()>" for an exception, demangled: the text the default reporter prints.
[[nodiscard]] std::string describe(std::exception_ptr error);

}  // namespace strand
