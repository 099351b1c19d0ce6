// The process target: fork, a result pipe, and one watcher thread per child in the parent.
//
// The watcher polls three things: the pipe (frames from the child), a pidfd (the child exited), and
// an eventfd (cancel() was called). Exit is learned from the pidfd, not from the pipe's end,
// because a child forked at the same moment by another thread may hold a copy of this pipe's write
// end. Once the child has exited, what it wrote is all in the pipe, so the watcher drains it, reaps
// the child and finishes the handle. Signals go through the pidfd, which cannot name a recycled
// pid.
#include "strand/process.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <system_error>
#include <thread>

#include "fd.hpp"

namespace strand {
namespace {

// Children forked and not yet reaped, for live_process_tasks() and tests that check for zombies.
struct LiveChildren {
  std::mutex mutex;
  std::condition_variable none_left;
  std::size_t count = 0;
};
LiveChildren& live_children() {
  static auto* live = new LiveChildren;  // never destroyed: watchers may outlive main()
  return *live;
}

// Exit codes a child uses when it tells the parent why in a crash frame first.
constexpr int kExitNotStdException = 70;
constexpr int kExitOutOfMemory = 71;
constexpr int kExitNoParent = 72;

// Frame layout: kind (1 byte), payload length (4 bytes, little endian), payload.
constexpr std::size_t kFrameHeader = 5;
constexpr std::uint32_t kMaxFrame = 1U << 30;

std::string signal_text(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return std::to_string(sig) + (abbrev != nullptr ? " (SIG" + std::string(abbrev) + ")" : "");
}

void write_all_or_exit(int fd, const char* data, std::size_t size) noexcept {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      ::_exit(kExitNoParent);  // the parent closed its end: nobody wants the result any more
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}

[[noreturn]] void child_crash(const detail::ResultPipe& pipe, std::string_view why, int code) {
  pipe.send(detail::FrameKind::crash, why);
  std::fflush(nullptr);
  ::_exit(code);
}

// The whole life of a child, in the child.
[[noreturn]] void run_child(int fd, detail::ChildMain main, const void* context,
                            const ProcessOptions& options) noexcept {
  // The parent's cancel sends SIGTERM; a child that inherited "ignore" would never stop.
  std::signal(SIGTERM, SIG_DFL);
  std::signal(SIGPIPE, SIG_DFL);
  const detail::ResultPipe pipe(fd);
  if (options.memory_limit) {
    const rlimit limit{*options.memory_limit, *options.memory_limit};
    ::setrlimit(RLIMIT_AS, &limit);
  }
  try {
    main(context, pipe);
  } catch (const std::bad_alloc&) {
    child_crash(pipe, "ran out of memory", kExitOutOfMemory);
  } catch (const std::exception& e) {
    try {
      pipe.send(detail::FrameKind::error, encode(error_info(std::current_exception())));
    } catch (...) {
      child_crash(pipe, "ran out of memory", kExitOutOfMemory);
    }
  } catch (...) {
    child_crash(pipe, "threw an exception that is not a std::exception", kExitNotStdException);
  }
  std::fflush(nullptr);  // what the function printed; the parent flushed its own before the fork
  ::_exit(0);
}

class Watcher {
 public:
  Watcher(std::unique_ptr<detail::ProcessSink> sink, pid_t pid, detail::Fd pipe, detail::Fd pidfd,
          detail::Fd wake, const ProcessOptions& options)
      : sink_(std::move(sink)),
        pid_(pid),
        pipe_(std::move(pipe)),
        pidfd_(std::move(pidfd)),
        wake_(std::move(wake)),
        options_(options),
        started_(std::chrono::steady_clock::now()) {}

  void run() noexcept {
    // cancel() wakes this thread; the thread, not the canceller, signals the child, so no signal
    // is ever sent after the child was reaped.
    const std::stop_callback on_cancel(sink_->state().stop_token(), [this] {
      const std::uint64_t one = 1;
      (void)!::write(wake_.get(), &one, sizeof one);
    });
    int status = 0;
    for (;;) {
      pollfd fds[3] = {{pidfd_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}, {-1, POLLIN, 0}};
      if (pipe_) fds[2].fd = pipe_.get();
      const int n = ::poll(fds, 3, poll_timeout_ms());
      if (n < 0 && errno != EINTR) break;
      if (fds[1].revents & POLLIN) {
        std::uint64_t count = 0;
        (void)!::read(wake_.get(), &count, sizeof count);
      }
      if (pipe_ && (fds[2].revents & (POLLIN | POLLHUP | POLLERR))) read_pipe();
      enforce_deadlines();
      if (fds[0].revents & POLLIN) break;  // the child has exited
    }
    if (pipe_) read_pipe(/*drain=*/true);
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pidfd_.reset();
    finish(status);
    {
      auto& live = live_children();
      std::lock_guard lock(live.mutex);
      if (--live.count == 0) live.none_left.notify_all();
    }
  }

 private:
  using clock = std::chrono::steady_clock;

  int poll_timeout_ms() const {
    std::optional<clock::time_point> next;
    if (kill_at_) next = kill_at_;
    if (options_.timeout && !terminated_) {
      const auto t = started_ + *options_.timeout;
      if (!next || t < *next) next = t;
    }
    if (!next) return -1;
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(*next - clock::now()).count();
    return static_cast<int>(std::max<decltype(left)>(0, left));
  }

  void signal_child(int sig) const noexcept {
    ::syscall(SYS_pidfd_send_signal, pidfd_.get(), sig, nullptr, 0);
  }

  void terminate() {
    if (terminated_) return;
    terminated_ = true;
    signal_child(SIGTERM);
    kill_at_ = clock::now() + options_.grace;
  }

  void enforce_deadlines() {
    const auto now = clock::now();
    if (sink_->state().status() == Status::cancelled) terminate();
    if (options_.timeout && !terminated_ && now >= started_ + *options_.timeout) {
      timed_out_ = true;
      terminate();
    }
    if (kill_at_ && now >= *kill_at_) {
      signal_child(SIGKILL);
      kill_at_.reset();
    }
  }

  // Reads what is in the pipe and hands whole frames to the sink. With `drain`, reads until the
  // pipe is empty (the child has exited, so nothing more is coming from it).
  void read_pipe(bool drain = false) {
    char chunk[64 * 1024];
    for (;;) {
      const ssize_t n = ::read(pipe_.get(), chunk, sizeof chunk);
      if (n < 0) {
        if (errno == EINTR) continue;
        break;  // EAGAIN: nothing more for now
      }
      if (n == 0) {  // every write end is closed
        pipe_.reset();
        break;
      }
      buffer_.append(chunk, static_cast<std::size_t>(n));
      parse_frames();
      if (!drain && static_cast<std::size_t>(n) < sizeof chunk) break;
    }
  }

  void parse_frames() {
    std::size_t at = 0;
    while (!broken_ && buffer_.size() - at >= kFrameHeader) {
      const auto kind = static_cast<unsigned char>(buffer_[at]);
      std::uint32_t size = 0;
      std::memcpy(&size, buffer_.data() + at + 1, sizeof size);
      if (kind < 1 || kind > 4 || size > kMaxFrame) {
        broken_ = "sent a malformed frame on its result pipe";
        break;
      }
      if (buffer_.size() - at - kFrameHeader < size) break;
      deliver(static_cast<detail::FrameKind>(kind),
              std::string_view(buffer_).substr(at + kFrameHeader, size));
      at += kFrameHeader + size;
    }
    buffer_.erase(0, at);
  }

  void deliver(detail::FrameKind kind, std::string_view payload) {
    if (outcome_ != Outcome::none) {  // nothing may follow a result
      broken_ = "sent more after its result";
      return;
    }
    try {
      switch (kind) {
        case detail::FrameKind::item:
          sink_->item(payload);
          return;
        // A result is final: the handle completes now, without waiting for the child's exit
        // (it is _exit(0) next, and is reaped all the same).
        case detail::FrameKind::value:
          sink_->value(payload);
          outcome_ = Outcome::value;
          if (sink_->state().status() != Status::cancelled) sink_->succeed();
          return;
        case detail::FrameKind::error:
          error_ = to_exception(decode<ErrorInfo>(payload));
          outcome_ = Outcome::error;
          if (sink_->state().status() != Status::cancelled) sink_->fail(error_);
          return;
        case detail::FrameKind::crash:
          crash_ = std::string(payload);
          outcome_ = Outcome::crash;
          return;
      }
    } catch (...) {  // a payload that does not decode, or on_iter threw: the task fails with it
      error_ = std::current_exception();
      outcome_ = Outcome::parent_error;
    }
  }

  [[nodiscard]] std::string who() const {
    return "strand: process task (pid " + std::to_string(pid_) + ")";
  }

  void crashed(const std::string& what, int status) {
    const int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    sink_->fail(std::make_exception_ptr(ProcessCrashed(who() + " " + what, pid_, sig, code)));
  }

  void finish(int status) noexcept {
    auto& state = sink_->state();
    if (state.status() == Status::cancelled) return;  // cancel() already published the outcome
    try {
      if (timed_out_) {
        sink_->fail(std::make_exception_ptr(
            Timeout(who() + " did not finish within its timeout of " +
                    std::to_string(options_.timeout->count()) + "ms and was stopped")));
        return;
      }
      if (broken_) return crashed(*broken_, status);
      switch (outcome_) {
        case Outcome::value:
        case Outcome::error:
          return;  // finished when the frame arrived
        case Outcome::parent_error:
          return sink_->fail(error_);
        case Outcome::crash:
          return crashed(crash_ + " and exited with code " + std::to_string(WEXITSTATUS(status)),
                         status);
        case Outcome::none:
          break;
      }
      if (WIFSIGNALED(status))
        return crashed("was killed by signal " + signal_text(WTERMSIG(status)), status);
      return crashed(
          "exited with code " + std::to_string(WEXITSTATUS(status)) + " without sending a result",
          status);
    } catch (...) {  // on_end threw, or building the error did: the task fails with it
      sink_->fail(std::current_exception());
    }
  }

  enum class Outcome { none, value, error, crash, parent_error };

  std::unique_ptr<detail::ProcessSink> sink_;
  pid_t pid_;
  detail::Fd pipe_;
  detail::Fd pidfd_;
  detail::Fd wake_;
  ProcessOptions options_;
  clock::time_point started_;
  std::optional<clock::time_point> kill_at_;
  bool terminated_ = false;
  bool timed_out_ = false;
  std::string buffer_;
  Outcome outcome_ = Outcome::none;
  std::exception_ptr error_;
  std::string crash_;
  std::optional<std::string> broken_;
};

}  // namespace

namespace detail {

void ResultPipe::send(FrameKind kind, std::string_view payload) const noexcept {
  char header[kFrameHeader];
  header[0] = static_cast<char>(kind);
  const auto size = static_cast<std::uint32_t>(payload.size());
  std::memcpy(header + 1, &size, sizeof size);
  write_all_or_exit(fd_, header, sizeof header);
  write_all_or_exit(fd_, payload.data(), payload.size());
}

void spawn_process(std::unique_ptr<ProcessSink> sink, ChildMain main, const void* context,
                   const ProcessOptions& options) {
  auto [read_end, write_end] = make_pipe();
  Fd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake) throw std::system_error(errno, std::generic_category(), "strand: eventfd");
  std::fflush(nullptr);  // or the child would write the parent's buffered output a second time
  {
    auto& live = live_children();
    std::lock_guard lock(live.mutex);
    ++live.count;
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int error = errno;
    auto& live = live_children();
    std::lock_guard lock(live.mutex);
    if (--live.count == 0) live.none_left.notify_all();
    throw std::system_error(error, std::generic_category(), "strand: fork for a process task");
  }
  if (pid == 0) {
    read_end.reset();
    run_child(write_end.release(), main, context, options);
  }
  write_end.reset();
  // The child is ours and unreaped, so its pid cannot be reused before the pidfd is opened.
  Fd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) {
    const int error = errno;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    auto& live = live_children();
    std::lock_guard lock(live.mutex);
    if (--live.count == 0) live.none_left.notify_all();
    throw std::system_error(error, std::generic_category(), "strand: pidfd_open");
  }
  auto watcher = std::make_unique<Watcher>(std::move(sink), pid, std::move(read_end),
                                           std::move(pidfd), std::move(wake), options);
  std::thread([w = std::move(watcher)] { w->run(); }).detach();
}

}  // namespace detail

std::size_t live_process_tasks() noexcept {
  auto& live = live_children();
  std::lock_guard lock(live.mutex);
  return live.count;
}

bool wait_process_tasks_reaped(std::chrono::nanoseconds timeout) {
  auto& live = live_children();
  std::unique_lock lock(live.mutex);
  return live.none_left.wait_for(lock, timeout, [&] { return live.count == 0; });
}

}  // namespace strand
