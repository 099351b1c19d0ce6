// Small tools shared by the tests: a one-shot gate and a capture of strand's error reports.
#pragma once

#include <dirent.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <utility>
#include <vector>

#include "strand/errors.hpp"

namespace strand::testing {

// One line of /proc/<pid>/stat for every process: what tests that check for leftover children
// and process groups read.
struct ProcStat {
  int pid = 0;
  char state = 0;  // 'Z' for a zombie
  int ppid = 0;
  int pgrp = 0;
};
inline std::vector<ProcStat> all_processes() {
  std::vector<ProcStat> found;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return found;
  while (dirent* entry = ::readdir(proc)) {
    ProcStat st;
    st.pid = std::atoi(entry->d_name);
    if (st.pid <= 0) continue;
    std::ifstream stat("/proc/" + std::string(entry->d_name) + "/stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    // pid (comm) state ppid pgrp ...: comm may hold spaces, so parse from the last ')'.
    const auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    if (std::sscanf(line.c_str() + close + 1, " %c %d %d", &st.state, &st.ppid, &st.pgrp) == 3) {
      found.push_back(st);
    }
  }
  ::closedir(proc);
  return found;
}

// A one-shot event: tasks block on wait() until the test calls open(). Copies share the event.
class Gate {
 public:
  Gate() : future_(promise_->get_future().share()) {}
  void open() const {
    std::call_once(*once_, [this] { promise_->set_value(); });
  }
  void wait() const { future_.wait(); }
  // False if the gate stayed shut for `timeout`: turns a would-be hang into a test failure.
  [[nodiscard]] bool wait_for(std::chrono::milliseconds timeout) const {
    return future_.wait_for(timeout) == std::future_status::ready;
  }
  [[nodiscard]] bool is_open() const {
    return future_.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
  }

 private:
  std::shared_ptr<std::promise<void>> promise_ = std::make_shared<std::promise<void>>();
  std::shared_ptr<std::once_flag> once_ = std::make_shared<std::once_flag>();
  std::shared_future<void> future_;
};

// Blocks until `stop` is requested: the body of a task that only ends when cancelled.
inline void sleep_until_stopped(const std::stop_token& stop) {
  std::mutex m;
  std::condition_variable_any cv;
  std::unique_lock lock(m);
  cv.wait(lock, stop, [] { return false; });
}

// Keeps one worker of `pool` busy until the pool shuts down cancelling (which requests the stop
// token the task receives); returns once that worker has surely started. Call it from a test body.
template <class Pool>
void occupy_until_cancelled(Pool& pool) {
  Gate busy;
  pool.post([busy](std::stop_token stop) {
    busy.open();
    sleep_until_stopped(stop);
  });
  if (!busy.wait_for(std::chrono::seconds(5))) throw std::runtime_error("the worker never started");
}

// Installs a reporter that records every report; restores the previous reporter when destroyed.
class ReportCapture {
 public:
  struct Report {
    std::string where;
    std::string description;
  };
  ReportCapture()
      : previous_(set_error_reporter([this](std::string_view where, std::exception_ptr e) {
          std::lock_guard lock(mutex_);
          reports_.push_back({std::string(where), describe(e)});
          seen_.notify_all();
        })) {}
  ~ReportCapture() { set_error_reporter(std::move(previous_)); }
  ReportCapture(const ReportCapture&) = delete;
  ReportCapture& operator=(const ReportCapture&) = delete;

  std::vector<Report> reports() const {
    std::lock_guard lock(mutex_);
    return reports_;
  }
  // Waits until at least `n` reports arrived (false after `timeout`).
  bool wait_for_count(std::size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    std::unique_lock lock(mutex_);
    return seen_.wait_for(lock, timeout, [&] { return reports_.size() >= n; });
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable seen_;
  std::vector<Report> reports_;
  ErrorReporter previous_;
};

}  // namespace strand::testing
