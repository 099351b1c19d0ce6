// Workers as real processes: `strand worker --plugin` on one store file, killed with SIGKILL and
// restarted, stopped with SIGSTOP past their lease, shut down with SIGTERM; and the plugin and
// store errors of the command line.
//
// TEST_CLI, TEST_PLUGIN and TEST_EMPTY_PLUGIN are the paths of the built program and
// plugins (compile definitions).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../store_support.hpp"
#include "strand/strand.hpp"

namespace {

using namespace std::chrono_literals;
using strand::Record;
using strand::Status;

struct Outcome {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

// Runs a shell command to its end.
Outcome run(const std::string& command) {
  Outcome out;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return out;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.output.append(buf, n);
  const int status = ::pclose(pipe);
  out.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

class WorkerProcesses : public ::testing::Test {
 protected:
  std::string url() const { return "sqlite://" + (dir_.path() / "jobs.db").string(); }

  // `strand worker` on the store, its output in <dir>/<name>.log. SIGTERM stops it gracefully.
  strand::RunningProcess start_worker(const std::string& name, const std::string& flags = "") {
    const std::string log = (dir_.path() / (name + ".log")).string();
    const std::string command = std::string("exec ") + TEST_CLI + " worker --store " + url() +
                                " --plugin " + TEST_PLUGIN + " --name " + name + " " + flags +
                                " > " + log + " 2>&1";
    return strand::run_process({"sh", "-c", command},
                               {.name = name, .grace = std::chrono::milliseconds(8000)});
  }

  // Waits (polling the store, which is another process's) until `pred` holds for the record.
  template <class Pred>
  Record wait_for(const std::string& id, Pred pred, std::chrono::seconds limit = 20s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    Record r = store_->get(id);
    while (!pred(r) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(5ms);  // another process writes it: there is nothing to wait on
      r = store_->get(id);
    }
    return r;
  }

  strand::testing::TempDir dir_;
  std::shared_ptr<strand::Store> store_ = strand::open_store(url());
  std::shared_ptr<strand::JobQueue> queue_ = strand::job_queue(store_);
};

TEST_F(WorkerProcesses, AMissingPluginIsAnError) {
  const auto out =
      run(std::string(TEST_CLI) + " worker --store " + url() + " --plugin /no/such/libtasks.so");
  EXPECT_EQ(out.exit_code, 2);
  EXPECT_EQ(out.output, "strand: cannot load plugin \"/no/such/libtasks.so\": no such file\n");
}

TEST_F(WorkerProcesses, APluginThatExportsNothingIsAnError) {
  const auto out =
      run(std::string(TEST_CLI) + " worker --store " + url() + " --plugin " + TEST_EMPTY_PLUGIN);
  EXPECT_EQ(out.exit_code, 2);
  EXPECT_EQ(out.output, std::string("strand: plugin \"") + TEST_EMPTY_PLUGIN +
                            "\" exports no strand_register function (define it with "
                            "STRAND_PLUGIN)\n");
}

TEST_F(WorkerProcesses, AStoreURLWithAnUnknownSchemeIsAnError) {
  const auto out = run(std::string(TEST_CLI) + " worker --store nope://x --plugin " + TEST_PLUGIN);
  EXPECT_EQ(out.exit_code, 3);
  EXPECT_NE(out.output.find("strand: cannot open store \"nope://x\": unknown scheme \"nope\""),
            std::string::npos)
      << out.output;
}

TEST_F(WorkerProcesses, SigtermLetsTheRunningJobFinish) {
  const std::string id = queue_->enqueue({.function = "count_slowly", .args = {25}});
  auto worker = start_worker("w1");
  const Record running = wait_for(id, [](const Record& r) { return r.progress > 0; });
  ASSERT_EQ(running.status, Status::running);
  worker.stop();  // SIGTERM; the job has about half a second left
  EXPECT_EQ(store_->get(id).status, Status::completed);
  EXPECT_EQ(store_->get(id).value, 25);
  EXPECT_NE(read_file(dir_.path() / "w1.log")
                .find("stopped by signal 15; 1 completed, 0 failed, 0 released, 0 refused"),
            std::string::npos)
      << read_file(dir_.path() / "w1.log");
}

// 1,000 jobs, three workers; every ~200 ms one of them is SIGKILLed and started again. Every job
// ends COMPLETED, with exactly one completed attempt: the jobs a killed worker held are claimed
// again once their leases run out, and nothing is recorded twice.
TEST_F(WorkerProcesses, EveryJobCompletesOnceWhileWorkersAreKilled) {
  constexpr int kJobs = 1000;
  std::vector<strand::JobRequest> requests;
  for (int i = 0; i < kJobs; ++i) requests.push_back({.function = "sleep_then_pid", .args = {3}});
  const auto ids = queue_->enqueue_many(requests);

  const std::string flags = "--concurrency 2 --lease 0.4";
  std::vector<strand::RunningProcess> workers;
  for (int w = 0; w < 3; ++w) workers.push_back(start_worker("w" + std::to_string(w), flags));
  std::mt19937 random(7);
  int kills = 0;
  const auto deadline = std::chrono::steady_clock::now() + 50s;
  auto unfinished = [&] {
    std::size_t n = 0;
    for (const auto& id : ids) n += store_->get(id).status != Status::completed ? 1 : 0;
    return n;
  };
  while (unfinished() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(200ms);  // the kill interval itself
    auto& victim = workers[random() % workers.size()];
    ::kill(victim.pid(), SIGKILL);
    victim.stop();  // reaps it
    victim = start_worker("w-restart-" + std::to_string(++kills), flags);
  }
  for (auto& w : workers) w.stop();

  int completed_attempts = 0;
  for (const auto& id : ids) {
    const Record r = store_->get(id);
    ASSERT_EQ(r.status, Status::completed) << id;
    int completed_here = 0;
    for (const auto& attempt : r.job->history) completed_here += attempt.outcome == "completed";
    EXPECT_EQ(completed_here, 1) << id;
    completed_attempts += completed_here;
  }
  EXPECT_EQ(completed_attempts, kJobs);
  EXPECT_GE(kills, 3);
}

// A worker frozen (SIGSTOP) past its lease while its job runs; another worker takes the job and
// finishes it; the frozen one, thawed (SIGCONT), finishes too, but its late result is refused.
TEST_F(WorkerProcesses, AWorkerResumedAfterItsLeaseCannotRecordItsResult) {
  const std::string id = queue_->enqueue({.function = "sleep_then_pid", .args = {600}});
  auto frozen = start_worker("frozen", "--lease 0.3");
  const Record taken = wait_for(id, [](const Record& r) { return r.status == Status::running; });
  ASSERT_EQ(taken.job->worker, "frozen");
  ASSERT_EQ(::kill(frozen.pid(), SIGSTOP), 0);

  auto second = start_worker("second", "--lease 0.3");
  const int second_pid = second.pid();  // stop() forgets it
  const Record done = wait_for(id, [](const Record& r) { return r.status == Status::completed; });
  ASSERT_EQ(done.status, Status::completed);
  EXPECT_EQ(done.value, second_pid);
  ASSERT_EQ(done.job->history.size(), 2u);
  EXPECT_EQ(done.job->history[0].worker, "frozen");
  EXPECT_EQ(done.job->history[0].outcome, "lease expired");
  EXPECT_EQ(done.job->history[1].worker, "second");

  ASSERT_EQ(::kill(frozen.pid(), SIGCONT), 0);
  frozen.stop();  // SIGTERM: it waits for its job, whose result is then refused
  second.stop();
  EXPECT_NE(
      read_file(dir_.path() / "frozen.log").find("0 completed, 0 failed, 0 released, 1 refused"),
      std::string::npos)
      << read_file(dir_.path() / "frozen.log");
  const Record after = store_->get(id);
  EXPECT_EQ(after.value, second_pid);
  EXPECT_EQ(after.version, done.version);  // nothing written since
}

}  // namespace
