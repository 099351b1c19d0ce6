// strand/run_process.hpp — a child process for the length of a scope.
//
//   {
//     auto server = strand::run_process({"redis-server", "--port", "7001"},
//                                       {.name = "redis", .is_ready = port_open(7001)});
//     // ... the server is up (or run_process threw Timeout and cleaned up) ...
//   }  // SIGTERM to its process group, SIGKILL after the grace period, reaped
//
//   auto worker = strand::run_process(my_worker, {.name = "my_worker", .is_ready = 200ms});
//   worker.alive();
//
// `is_ready` is either a duration to wait (the child must still be running after it) or a
// predicate polled with back-off until it returns true or `ready_timeout` passes; then run_process
// throws Timeout naming the process, after cleaning up the child. When `process_already_running`
// returns true nothing is launched and the guard is empty (`!guard`). An executable that cannot be
// started is an error from run_process itself (ProcessStartError), not a child that exits 127.
//
// The child leads its own process group, so what it starts (a shell's children) goes with it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <concepts>
#include <functional>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "strand/errors.hpp"

namespace strand {

// run_process could not start the child, or the child ended before it was ready.
class ProcessStartError : public Error {
 public:
  using Error::Error;
};

struct RunProcessOptions {
  // How messages name the process; empty means the command's argv[0], or "process".
  std::string name{};
  // A duration to wait, or a predicate that says the process is ready (polled with back-off).
  std::variant<std::chrono::milliseconds, std::function<bool()>> is_ready =
      std::chrono::milliseconds(0);
  // How long a readiness predicate may take to say yes.
  std::chrono::milliseconds ready_timeout{10'000};
  // At scope exit: SIGKILL at once instead of SIGTERM first.
  bool force_kill = false;
  // At scope exit: how long after SIGTERM before SIGKILL.
  std::chrono::milliseconds grace{2'000};
  // When set and it returns true, nothing is launched and the guard is empty.
  std::function<bool()> process_already_running{};
};

// Owns a running child (or nothing). Move-only; the destructor stops and reaps the child.
class RunningProcess {
 public:
  RunningProcess() = default;
  RunningProcess(RunningProcess&& other) noexcept;
  RunningProcess& operator=(RunningProcess&& other) noexcept;
  RunningProcess(const RunningProcess&) = delete;
  RunningProcess& operator=(const RunningProcess&) = delete;
  ~RunningProcess();

  // False when process_already_running said so and nothing was launched.
  [[nodiscard]] bool empty() const noexcept { return pid_ <= 0; }
  explicit operator bool() const noexcept { return !empty(); }
  [[nodiscard]] bool alive() const noexcept;
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  [[nodiscard]] const std::string& name() const noexcept { return name_; }

  // Stops the child's process group (SIGTERM, then SIGKILL after the grace period; SIGKILL at once
  // with force_kill) and reaps the child. What the destructor does; calling it again does nothing.
  void stop() noexcept;

  // Used by run_process; not for direct use.
  static RunningProcess start(std::function<void()> child_main, std::vector<std::string> argv,
                              RunProcessOptions options);

 private:
  void wait_until_ready(const RunProcessOptions& options);
  // The child exited while run_process waited for it: reap it, then throw ProcessStartError.
  [[noreturn]] void ended_before_ready();

  pid_t pid_ = -1;
  int pidfd_ = -1;
  std::string name_;
  bool force_kill_ = false;
  std::chrono::milliseconds grace_{0};
};

// Runs f() in a forked child for the guard's lifetime.
template <class F>
requires std::invocable<F&>
[[nodiscard]] RunningProcess run_process(F f, RunProcessOptions options = {}) {
  return RunningProcess::start(std::function<void()>([f = std::move(f)]() mutable { f(); }), {},
                               std::move(options));
}

// Runs an external command (argv[0] is looked up in PATH) for the guard's lifetime.
[[nodiscard]] RunningProcess run_process(std::vector<std::string> argv,
                                         RunProcessOptions options = {});

}  // namespace strand
