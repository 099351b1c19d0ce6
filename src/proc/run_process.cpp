#include "strand/run_process.hpp"

#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <utility>

namespace strand {
namespace {

using std::chrono::milliseconds;
using clock = std::chrono::steady_clock;

// Waits up to `timeout` for the child behind `pidfd` to exit; true if it did.
bool wait_exit(int pidfd, milliseconds timeout) {
  const auto deadline = clock::now() + timeout;
  for (;;) {
    pollfd p{pidfd, POLLIN, 0};
    const auto left = std::chrono::ceil<milliseconds>(deadline - clock::now()).count();
    const int n = ::poll(&p, 1, static_cast<int>(std::max<decltype(left)>(0, left)));
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) return false;
  }
}

std::string exit_text(int status) {
  if (WIFSIGNALED(status)) {
    const char* abbrev = sigabbrev_np(WTERMSIG(status));
    return "was killed by signal " + std::to_string(WTERMSIG(status)) +
           (abbrev != nullptr ? " (SIG" + std::string(abbrev) + ")" : "");
  }
  return "exited with code " + std::to_string(WEXITSTATUS(status));
}

}  // namespace

RunningProcess::RunningProcess(RunningProcess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      pidfd_(std::exchange(other.pidfd_, -1)),
      name_(std::move(other.name_)),
      force_kill_(other.force_kill_),
      grace_(other.grace_) {}

RunningProcess& RunningProcess::operator=(RunningProcess&& other) noexcept {
  if (this != &other) {
    stop();
    pid_ = std::exchange(other.pid_, -1);
    pidfd_ = std::exchange(other.pidfd_, -1);
    name_ = std::move(other.name_);
    force_kill_ = other.force_kill_;
    grace_ = other.grace_;
  }
  return *this;
}

RunningProcess::~RunningProcess() {
  stop();
}

bool RunningProcess::alive() const noexcept {
  if (empty()) return false;
  pollfd p{pidfd_, POLLIN, 0};
  return ::poll(&p, 1, 0) == 0;  // readable once the child has exited
}

void RunningProcess::stop() noexcept {
  if (empty()) return;
  // The child leads its group: signal the group, so its own children go too.
  if (force_kill_) {
    ::kill(-pid_, SIGKILL);
  } else if (alive()) {
    ::kill(-pid_, SIGTERM);
    if (!wait_exit(pidfd_, grace_)) ::kill(-pid_, SIGKILL);
  }
  while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
  }
  ::kill(-pid_, SIGKILL);  // whatever of the group outlived its leader
  ::close(pidfd_);
  pid_ = -1;
  pidfd_ = -1;
}

void RunningProcess::ended_before_ready() {
  int status = 0;
  ::waitpid(pid_, &status, 0);
  ::close(pidfd_);
  pid_ = -1;
  pidfd_ = -1;
  throw ProcessStartError("strand: run_process: \"" + name_ + "\" " + exit_text(status) +
                          " before it was ready");
}

void RunningProcess::wait_until_ready(const RunProcessOptions& options) {
  if (const auto* wait = std::get_if<milliseconds>(&options.is_ready)) {
    if (wait->count() > 0 && wait_exit(pidfd_, *wait)) {
      ended_before_ready();
    }
    return;
  }
  const auto& ready = std::get<std::function<bool()>>(options.is_ready);
  if (!ready) return;
  const auto deadline = clock::now() + options.ready_timeout;
  // A predicate has no wake-up to wait on: poll it, backing off from 1 ms to 50 ms.
  auto pause = milliseconds(1);
  for (;;) {
    if (ready()) return;  // an exception propagates; the destructor of the caller's guard cleans up
    if (!alive()) {
      ended_before_ready();
    }
    const auto now = clock::now();
    if (now >= deadline) {
      throw Timeout("strand: run_process: \"" + name_ + "\" was not ready within " +
                    std::to_string(options.ready_timeout.count()) + "ms");
    }
    (void)wait_exit(pidfd_, std::min(pause, std::chrono::ceil<milliseconds>(deadline - now)));
    pause = std::min(pause * 2, milliseconds(50));
  }
}

RunningProcess RunningProcess::start(std::function<void()> child_main,
                                     std::vector<std::string> argv, RunProcessOptions options) {
  RunningProcess guard;
  if (options.process_already_running && options.process_already_running()) return guard;
  guard.name_ = !options.name.empty() ? options.name : !argv.empty() ? argv[0] : "process";
  guard.force_kill_ = options.force_kill;
  guard.grace_ = options.grace;

  std::fflush(nullptr);  // or the child would write the parent's buffered output again
  pid_t pid = -1;
  if (!argv.empty()) {
    // posix_spawn reports a failed exec as its own error, so a missing executable is an error here
    // rather than a child that silently exits 127.
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t defaults;
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGTERM);
    sigaddset(&defaults, SIGPIPE);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setpgroup(&attr, 0);  // the child leads a new group
    posix_spawnattr_setflags(
        &attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    const int error = ::posix_spawnp(&pid, args[0], nullptr, &attr, args.data(), environ);
    posix_spawnattr_destroy(&attr);
    if (error != 0) {
      throw ProcessStartError("strand: run_process could not start \"" + argv[0] +
                              "\": " + std::strerror(error));
    }
  } else {
    pid = ::fork();
    if (pid < 0) {
      throw std::system_error(errno, std::generic_category(), "strand: run_process fork");
    }
    if (pid == 0) {
      ::setpgid(0, 0);
      ::signal(SIGTERM, SIG_DFL);
      ::signal(SIGPIPE, SIG_DFL);
      int code = 0;
      try {
        child_main();
      } catch (const std::exception& e) {
        std::fprintf(stderr, "strand: run_process: \"%s\" threw: %s\n", guard.name_.c_str(),
                     e.what());
        code = 1;
      } catch (...) {
        code = 1;
      }
      std::fflush(nullptr);
      ::_exit(code);
    }
    ::setpgid(pid, pid);  // also here, so the group exists before anything signals it
  }
  guard.pid_ = pid;
  guard.pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (guard.pidfd_ < 0) {
    const int error = errno;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    guard.pid_ = -1;
    throw std::system_error(error, std::generic_category(), "strand: pidfd_open");
  }
  guard.wait_until_ready(options);
  return guard;
}

RunningProcess run_process(std::vector<std::string> argv, RunProcessOptions options) {
  if (argv.empty()) throw std::invalid_argument("strand: run_process needs a command (argv[0])");
  return RunningProcess::start({}, std::move(argv), std::move(options));
}

}  // namespace strand
