// run_process with real children: functions and commands, readiness, cleanup at scope exit.
#include "strand/run_process.hpp"

#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;

namespace {

// Live (not zombie) processes whose process group is `pgid`.
std::vector<int> live_members_of_group(int pgid) {
  std::vector<int> found;
  for (const auto& p : strand::testing::all_processes()) {
    if (p.pgrp == pgid && p.state != 'Z') found.push_back(p.pid);
  }
  return found;
}

bool exists_as_child(int pid) {
  return ::waitpid(pid, nullptr, WNOHANG) == 0;  // 0: our child, still there
}

// The members of a group die asynchronously after a SIGKILL, and are not ours to wait for: poll
// /proc (there is nothing to be woken by) until none is left or 5 s pass.
bool group_ends(int pgid) {
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!live_members_of_group(pgid).empty()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

class RunProcess : public ::testing::Test {
 protected:
  std::filesystem::path dir_ =
      std::filesystem::temp_directory_path() / ("strand_run_process_" + std::to_string(::getpid()));
  void SetUp() override { std::filesystem::create_directories(dir_); }
  void TearDown() override { std::filesystem::remove_all(dir_); }
};

TEST_F(RunProcess, AFunctionRunsInAChildForTheScope) {
  int pid = 0;
  {
    auto proc = strand::run_process([] {
      for (;;) ::pause();
    });
    ASSERT_TRUE(proc);
    EXPECT_TRUE(proc.alive());
    pid = proc.pid();
    EXPECT_GT(pid, 0);
    EXPECT_NE(pid, ::getpid());
    EXPECT_EQ(proc.name(), "process");
  }
  EXPECT_FALSE(exists_as_child(pid)) << "the child was not reaped at scope exit";
  EXPECT_TRUE(group_ends(pid));
}

TEST_F(RunProcess, ACommandAndEverythingItStartedStopAtScopeExit) {
  const auto flag = dir_ / "started";
  int pgid = 0;
  {
    auto sh =
        strand::run_process({"sh", "-c", "sleep 30 & sleep 30 & : > '" + flag.string() + "'; wait"},
                            {.name = "sleepers", .is_ready = [flag] {
                               return std::filesystem::exists(flag);
                             }});
    pgid = sh.pid();
    EXPECT_EQ(sh.name(), "sleepers");
    EXPECT_TRUE(sh.alive());
    EXPECT_EQ(live_members_of_group(pgid).size(), 3U);  // the shell and its two sleeps
  }
  EXPECT_TRUE(group_ends(pgid)) << "left: " << live_members_of_group(pgid).size();
}

TEST_F(RunProcess, AMissingExecutableIsAnErrorFromRunProcessItself) {
  try {
    auto proc = strand::run_process({"strand-no-such-program", "--flag"});
    FAIL() << "expected ProcessStartError";
  } catch (const strand::ProcessStartError& e) {
    EXPECT_STREQ(e.what(),
                 "strand: run_process could not start \"strand-no-such-program\": No such file or "
                 "directory");
  }
}

TEST_F(RunProcess, AnEmptyCommandIsRefused) {
  EXPECT_THROW((void)strand::run_process(std::vector<std::string>{}), std::invalid_argument);
}

TEST_F(RunProcess, IsReadyAsADurationWaitsThatLong) {
  const auto start = std::chrono::steady_clock::now();
  auto proc = strand::run_process({"sleep", "30"}, {.is_ready = 50ms});
  EXPECT_GE(std::chrono::steady_clock::now() - start, 50ms);
  EXPECT_TRUE(proc.alive());
}

TEST_F(RunProcess, AChildThatEndsBeforeItIsReadyIsAnError) {
  try {
    auto proc = strand::run_process({"sh", "-c", "exit 4"}, {.name = "quitter", .is_ready = 5s});
    FAIL() << "expected ProcessStartError";
  } catch (const strand::ProcessStartError& e) {
    EXPECT_STREQ(e.what(),
                 "strand: run_process: \"quitter\" exited with code 4 before it was ready");
  }
}

TEST_F(RunProcess, IsReadyAsAPredicateWaitsUntilItSaysYes) {
  const auto flag = dir_ / "ready";
  auto proc = strand::run_process(
      [flag] {
        std::ofstream(flag) << "up";
        for (;;) ::pause();
      },
      {.name = "writer", .is_ready = [flag] {
         return std::filesystem::exists(flag);
       }});
  EXPECT_TRUE(std::filesystem::exists(flag));
  EXPECT_TRUE(proc.alive());
}

TEST_F(RunProcess, AReadinessTimeoutNamesTheProcessAndCleansUp) {
  std::atomic<int> launched{0};
  try {
    auto proc = strand::run_process({"sleep", "30"}, {.name = "never-ready",
                                                      .is_ready =
                                                          [&] {
                                                            ++launched;
                                                            return false;
                                                          },
                                                      .ready_timeout = 100ms});
    FAIL() << "expected Timeout";
  } catch (const strand::Timeout& e) {
    EXPECT_STREQ(e.what(), "strand: run_process: \"never-ready\" was not ready within 100ms");
  }
  EXPECT_GT(launched.load(), 1);  // polled more than once
  // The child was reaped: no child of ours is left at all.
  EXPECT_EQ(::waitpid(-1, nullptr, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
}

TEST_F(RunProcess, AReadinessPredicateThatThrowsPropagatesAndCleansUp) {
  try {
    auto proc = strand::run_process({"sleep", "30"}, {.is_ready = []() -> bool {
                                      throw std::runtime_error("probe broke");
                                    }});
    FAIL() << "expected the predicate's exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "probe broke");
  }
  EXPECT_EQ(::waitpid(-1, nullptr, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
}

TEST_F(RunProcess, AlreadyRunningMeansNothingIsLaunched) {
  auto proc = strand::run_process({"sleep", "30"}, {.process_already_running = [] {
                                    return true;
                                  }});
  EXPECT_FALSE(proc);
  EXPECT_TRUE(proc.empty());
  EXPECT_FALSE(proc.alive());
  EXPECT_EQ(::waitpid(-1, nullptr, WNOHANG), -1);  // no child at all
}

TEST_F(RunProcess, NotAlreadyRunningLaunches) {
  auto proc = strand::run_process({"sleep", "30"}, {.process_already_running = [] {
                                    return false;
                                  }});
  EXPECT_TRUE(proc);
  EXPECT_TRUE(proc.alive());
}

// A shell that ignores SIGTERM, and says so by creating `flag` once the trap is set.
std::vector<std::string> stubborn_shell(const std::filesystem::path& flag) {
  return {"sh", "-c", "trap '' TERM; : > '" + flag.string() + "'; while :; do sleep 1; done"};
}

TEST_F(RunProcess, AChildIgnoringSigtermIsKilledAfterTheGracePeriod) {
  const auto flag = dir_ / "trapped";
  const auto start = std::chrono::steady_clock::now();
  {
    auto proc = strand::run_process(
        stubborn_shell(flag),
        {.is_ready = [flag] { return std::filesystem::exists(flag); }, .grace = 100ms});
  }
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_GE(took, 100ms);
  EXPECT_LT(took, 5s);
}

TEST_F(RunProcess, ForceKillDoesNotWaitForTheGracePeriod) {
  const auto start = std::chrono::steady_clock::now();
  {
    const auto flag = dir_ / "trapped";
    auto proc = strand::run_process(stubborn_shell(flag),
                                    {.is_ready = [flag] { return std::filesystem::exists(flag); },
                                     .force_kill = true,
                                     .grace = 5s});
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 4s);
}

TEST_F(RunProcess, AliveTurnsFalseWhenTheChildEnds) {
  auto proc = strand::run_process({"sh", "-c", "exit 0"});
  // The child ends on its own; alive() reads the pidfd, so wait for that rather than sleep.
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (proc.alive() && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  EXPECT_FALSE(proc.alive());
}

TEST_F(RunProcess, TheGuardMoves) {
  auto a = strand::run_process({"sleep", "30"});
  const int pid = a.pid();
  strand::RunningProcess b = std::move(a);
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): a moved-from guard is empty
  EXPECT_EQ(b.pid(), pid);
  b.stop();
  EXPECT_TRUE(b.empty());
  EXPECT_FALSE(exists_as_child(pid));
}

}  // namespace
