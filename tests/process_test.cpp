// The process target, with real forks: results, streaming, errors, crashes, cancel, timeouts, and
// no child left behind.
#include "strand/process.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "strand/generator.hpp"
#include "strand/runner.hpp"
#include "strand/thread_pool.hpp"
#include "support.hpp"

using namespace std::chrono_literals;

namespace app {
struct Reading {
  std::string sensor;
  double value = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Reading, sensor, value)
struct Overheated : std::runtime_error {
  using std::runtime_error::runtime_error;
};
}  // namespace app

namespace {

// Children of this test process that exist (running or zombie).
std::vector<int> children_of_this_process() {
  std::vector<int> found;
  for (const auto& p : strand::testing::all_processes()) {
    if (p.ppid == ::getpid()) found.push_back(p.pid);
  }
  return found;
}

class Process : public ::testing::Test {
 protected:
  void TearDown() override {
    EXPECT_TRUE(strand::wait_process_tasks_reaped(5s));
    EXPECT_EQ(strand::live_process_tasks(), 0U);
    EXPECT_EQ(children_of_this_process(), std::vector<int>{}) << "a child was not reaped";
  }
};

// In the child: the write end of the result pipe (the only write-only pipe it holds).
int result_pipe_fd() {
  for (int fd = 3; fd < 1024; ++fd) {
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode)) continue;
    if ((::fcntl(fd, F_GETFL) & O_ACCMODE) == O_WRONLY) return fd;
  }
  return -1;
}

// What a crash looks like to the parent.
template <class H>
strand::ProcessCrashed crash_of(H& handle) {
  try {
    handle.get(5s);
  } catch (const strand::ProcessCrashed& e) {
    return e;
  }
  throw std::logic_error("the task did not fail with ProcessCrashed");
}

std::string without_pid(std::string what) {
  const auto at = what.find("(pid ");
  const auto end = what.find(')', at);
  if (at != std::string::npos && end != std::string::npos)
    what.replace(at, end - at + 1, "(pid N)");
  return what;
}

TEST_F(Process, ReturnsTheResultFromTheChild) {
  auto twice = strand::ProcessTaskrunner([](int x) { return x * 2; });
  auto h = twice(21);
  EXPECT_EQ(h.get(5s), 42);
  EXPECT_EQ(h.status(), strand::Status::completed);
}

TEST_F(Process, RunsInAnotherProcess) {
  const int parent = ::getpid();
  auto pid_of_runner =
      strand::as_task(strand::process, [] { return static_cast<int>(::getpid()); });
  EXPECT_NE(pid_of_runner().get(5s), parent);
}

TEST_F(Process, UserTypesAndVoidCrossBack) {
  auto read = strand::as_task(strand::process, [](std::string name) {
    return app::Reading{std::move(name), 21.5};
  });
  const auto r = read("boiler").get(5s);
  EXPECT_EQ(r.sensor, "boiler");
  EXPECT_EQ(r.value, 21.5);
  auto nothing = strand::as_task("process", [] {});
  auto h = nothing();
  h.get(5s);
  EXPECT_EQ(h.status(), strand::Status::completed);
}

TEST_F(Process, InitArgumentsAndCallbacksRunInTheParent) {
  const int parent = ::getpid();
  std::atomic<int> seen_in{0};
  std::atomic<int> seen_value{0};
  auto add = strand::ProcessTaskrunner([](int base, int x) { return base + x; }, 100,
                                       strand::on_end([&](int v) {
                                         seen_in = static_cast<int>(::getpid());
                                         seen_value = v;
                                       }));
  EXPECT_EQ(add(5).get(5s), 105);
  EXPECT_EQ(seen_in.load(), parent);
  EXPECT_EQ(seen_value.load(), 105);
}

TEST_F(Process, StandardExceptionsComeBackAsThemselves) {
  auto at = strand::as_task(strand::process, [](int i) {
    return std::vector<int>{1, 2}.at(static_cast<std::size_t>(i));
  });
  auto h = at(7);
  EXPECT_THROW(h.get(5s), std::out_of_range);
  EXPECT_EQ(h.status(), strand::Status::failed);
}

TEST_F(Process, OtherExceptionsComeBackAsRemoteErrorWithTheirTypeName) {
  std::atomic<bool> on_error_ran{false};
  auto hot = strand::as_task(
      strand::process, []() -> int { throw app::Overheated("boiler at 130C"); },
      strand::on_error([&](const std::exception& e) {
        on_error_ran = std::string(e.what()) == "app::Overheated: boiler at 130C";
      }));
  try {
    hot().get(5s);
    FAIL() << "expected RemoteError";
  } catch (const strand::RemoteError& e) {
    EXPECT_EQ(e.type_name(), "app::Overheated");
    EXPECT_EQ(e.message(), "boiler at 130C");
  }
  EXPECT_TRUE(on_error_ran.load());
}

strand::Generator<int> count_then_wait(int go_fd) {
  co_yield 1;
  char byte = 0;
  // Blocks until the parent has seen the first element: only streaming gets past this.
  while (::read(go_fd, &byte, 1) < 0 && errno == EINTR) {
  }
  co_yield 2;
  co_yield 3;
}

TEST_F(Process, OnIterSeesEachElementAsTheChildProducesIt) {
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  std::vector<int> seen;
  auto stream = strand::as_task(strand::process, count_then_wait, strand::on_iter([&](int v) {
                                  seen.push_back(v);
                                  if (v == 1) (void)!::write(go[1], "g", 1);
                                }));
  auto h = stream(go[0]);
  h.get(5s);
  EXPECT_EQ(seen, (std::vector<int>{1, 2, 3}));
  ::close(go[0]);
  ::close(go[1]);
}

TEST_F(Process, ASegfaultFailsTheHandleNamingTheSignal) {
  auto crash = strand::as_task(strand::process, []() -> int {
    std::signal(SIGSEGV, SIG_DFL);  // a sanitizer's handler would turn it into an exit code
    std::raise(SIGSEGV);
    return 0;
  });
  auto h = crash();
  const auto e = crash_of(h);
  EXPECT_EQ(without_pid(e.what()),
            "strand: process task (pid N) was killed by signal 11 (SIGSEGV)");
  EXPECT_EQ(e.signal(), SIGSEGV);
  EXPECT_EQ(e.exit_code(), -1);
  EXPECT_GT(e.pid(), 0);
}

TEST_F(Process, AnAbortFailsTheHandleAndOnErrorSeesIt) {
  std::string seen;
  auto crash = strand::as_task(
      strand::process,
      [] {
        std::signal(SIGABRT, SIG_DFL);
        std::abort();
      },
      strand::on_error([&](const std::exception& e) { seen = without_pid(e.what()); }));
  auto h = crash();
  EXPECT_EQ(without_pid(crash_of(h).what()),
            "strand: process task (pid N) was killed by signal 6 (SIGABRT)");
  EXPECT_EQ(seen, "strand: process task (pid N) was killed by signal 6 (SIGABRT)");
}

TEST_F(Process, AnExitWithoutAResultFailsTheHandleWithTheCode) {
  auto quit = strand::as_task(strand::process, []() -> int { std::exit(3); });
  auto h = quit();
  const auto e = crash_of(h);
  EXPECT_EQ(without_pid(e.what()),
            "strand: process task (pid N) exited with code 3 without sending a result");
  EXPECT_EQ(e.exit_code(), 3);
  EXPECT_EQ(e.signal(), 0);
}

TEST_F(Process, ANonStdExceptionFailsTheHandle) {
  auto odd = strand::as_task(strand::process, []() -> int { throw 42; });
  auto h = odd();
  EXPECT_EQ(without_pid(crash_of(h).what()),
            "strand: process task (pid N) threw an exception that is not a std::exception and "
            "exited with code 70");
}

#ifndef STRAND_SANITIZED  // sanitizers reserve far more address space than any sane limit
TEST_F(Process, AChildOverItsMemoryLimitFailsTheHandle) {
  auto hog = strand::as_task(
      strand::process,
      [] {
        std::vector<char> big(std::size_t{1} << 30, 'x');  // 1 GiB against a 256 MiB limit
        return static_cast<int>(big[12345]);
      },
      strand::ProcessOptions{.memory_limit = std::size_t{256} << 20});
  auto h = hog();
  EXPECT_EQ(without_pid(crash_of(h).what()),
            "strand: process task (pid N) ran out of memory and exited with code 71");
}
#endif

TEST_F(Process, TheParentAndOtherTasksCarryOnAfterACrash) {
  auto crash = strand::as_task(strand::process, [](int) -> int {
    std::signal(SIGSEGV, SIG_DFL);
    std::raise(SIGSEGV);
    return 0;
  });
  auto square = strand::as_task(strand::process, [](int x) { return x * x; });
  std::vector<strand::Handle<int>> crashes;
  std::vector<strand::Handle<int>> squares;
  for (int i = 0; i < 8; ++i) {
    crashes.push_back(crash(i));
    squares.push_back(square(i));
  }
  for (int i = 0; i < 8; ++i) {
    EXPECT_THROW(crashes[static_cast<std::size_t>(i)].get(5s), strand::ProcessCrashed);
    EXPECT_EQ(squares[static_cast<std::size_t>(i)].get(5s), i * i);
  }
}

TEST_F(Process, CancelStopsTheChildForReal) {
  auto forever = strand::as_task(strand::process, [] {
    for (;;) ::pause();
  });
  auto h = forever();
  EXPECT_TRUE(h.cancel());
  EXPECT_EQ(h.status(), strand::Status::cancelled);
  EXPECT_THROW(h.get(), strand::Cancelled);
  EXPECT_TRUE(strand::wait_process_tasks_reaped(5s));  // SIGTERM ended it
}

TEST_F(Process, AChildThatIgnoresSigtermIsKilledAfterTheGracePeriod) {
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  auto stubborn = strand::as_task(
      strand::process,
      [](int ready_fd) {
        std::signal(SIGTERM, SIG_IGN);
        (void)!::write(ready_fd, "r", 1);
        for (;;) ::pause();
      },
      strand::ProcessOptions{.grace = 50ms});
  auto h = stubborn(ready[1]);
  char byte = 0;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1);  // SIGTERM is ignored from here on
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(h.cancel());
  EXPECT_TRUE(strand::wait_process_tasks_reaped(5s));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 50ms);
  ::close(ready[0]);
  ::close(ready[1]);
}

TEST_F(Process, ATimeoutStopsTheChildAndFailsWithTimeout) {
  auto slow = strand::as_task(
      strand::process,
      []() -> int {
        for (;;) ::pause();
      },
      strand::ProcessOptions{.grace = 50ms, .timeout = 100ms});
  auto h = slow();
  try {
    h.get(5s);
    FAIL() << "expected Timeout";
  } catch (const strand::Timeout& e) {
    EXPECT_EQ(without_pid(e.what()),
              "strand: process task (pid N) did not finish within its timeout of 100ms and was "
              "stopped");
  }
  EXPECT_EQ(h.status(), strand::Status::failed);
}

TEST_F(Process, GarbageOnTheResultPipeFailsTheHandle) {
  auto liar = strand::as_task(strand::process, [] {
    const int fd = result_pipe_fd();
    (void)!::write(fd, "\x7fgarbage!", 9);
    ::_exit(0);
    return 0;
  });
  auto h = liar();
  EXPECT_EQ(without_pid(crash_of(h).what()),
            "strand: process task (pid N) sent a malformed frame on its result pipe");
}

TEST_F(Process, APayloadThatDoesNotDecodeIsADecodeErrorNamingTheType) {
  auto liar = strand::as_task(strand::process, [] {
    const int fd = result_pipe_fd();
    const char frame[] = {2, 1, 0, 0, 0, '\xc1'};  // a value frame whose msgpack is invalid
    (void)!::write(fd, frame, sizeof frame);
    ::_exit(0);
    return app::Reading{};
  });
  auto h = liar();
  try {
    h.get(5s);
    FAIL() << "expected DecodeError";
  } catch (const strand::DecodeError& e) {
    EXPECT_NE(std::string(e.what()).find(
                  "strand: cannot decode a value of type app::Reading from a msgpack payload"),
              std::string::npos)
        << e.what();
  }
}

TEST_F(Process, ANonSerializableResultWithAStringTargetIsRefusedClearly) {
  struct Opaque {
    int x;
  };
  auto opaque = strand::as_task("process", [] { return Opaque{1}; });
  try {
    (void)opaque();
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.rfind("strand: the process target needs a result that can cross a process "
                         "boundary, and ",
                         0),
              0U)
        << what;
    EXPECT_NE(what.find("Opaque cannot"), std::string::npos) << what;
  }
}

TEST_F(Process, TheChildCanUseTheDefaultPool) {
#ifdef STRAND_TSAN
  GTEST_SKIP() << "ThreadSanitizer does not support starting threads after a multithreaded fork";
#endif
#ifdef STRAND_ASAN
  // GCC 12's AddressSanitizer allocator has no fork handlers: a lock that another of the parent's
  // threads held at the fork stays held in the child, whose new threads then wait on it forever
  // (seen: the child's pool workers blocked in SizeClassAllocator64::GetFromAllocator). glibc's
  // malloc, which a real program uses, is made safe across fork.
  GTEST_SKIP() << "AddressSanitizer's allocator is not fork-safe in a multithreaded process";
#endif
  (void)strand::default_pool().submit([] { return 1; }).get();  // the parent's pool exists
  auto nested = strand::as_task(
      strand::process, [] { return strand::default_pool().submit([] { return 6 * 7; }).get(2s); });
  EXPECT_EQ(nested().get(5s), 42);
}

TEST_F(Process, ManyAtOnce) {
#ifdef STRAND_TSAN
  // CI saw one child of this test hang under ThreadSanitizer, once in some 600 children over all
  // its runs, and never reproduced it (40 runs, some with both cores loaded). The likely cause is
  // ThreadSanitizer's own runtime: a child forked from a multithreaded parent can wait forever on
  // a lock of its allocator or stack depot that another thread held at the fork (fixed in LLVM in
  // 2024, llvm/llvm-project#96600; GCC 12's libtsan is older). Fewer children make it rarer.
  constexpr int kChildren = 10;
#else
  constexpr int kChildren = 50;
#endif
  auto twice = strand::as_task(strand::process, [](int x) { return x * 2; });
  std::vector<strand::Handle<int>> handles;
  for (int i = 0; i < kChildren; ++i) handles.push_back(twice(i));
  for (int i = 0; i < kChildren; ++i) {
    EXPECT_EQ(handles[static_cast<std::size_t>(i)].get(5s), 2 * i);
  }
}

}  // namespace
