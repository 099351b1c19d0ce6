// strand/job.hpp — what a store keeps about a job: the call (a function's name and its arguments),
// how to run it, and the history of its attempts. It is the `job` member of a Record; the queue
// that moves jobs through their states is in strand/job_queue.hpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "strand/serialize.hpp"

namespace strand {

// What became of one attempt, kept in the job's history for inspection.
struct JobAttempt {
  std::uint64_t token = 0;  // the claim that ran it
  std::string worker{};
  std::chrono::system_clock::time_point started{};
  std::optional<std::chrono::system_clock::time_point> ended{};
  // "running", "completed", "failed", "lease expired", "released", "cancelled".
  std::string outcome = "running";
  std::optional<ErrorInfo> error{};
  friend bool operator==(const JobAttempt&, const JobAttempt&) = default;
};

// The job part of a Record.
struct Job {
  std::string function{};
  nlohmann::json args = nlohmann::json::array();
  std::string queue = "default";
  int priority = 0;
  int max_retries = 0;
  std::chrono::milliseconds retry_backoff{500};
  std::optional<std::chrono::milliseconds> timeout{};
  std::string idempotency_key{};
  int failures = 0;                                // failed attempts so far
  std::chrono::system_clock::time_point run_at{};  // not claimable before this (store clock)
  std::uint64_t token = 0;  // claims so far: the current (or last) lease's fencing token
  std::optional<std::chrono::system_clock::time_point> lease_expires{};  // while running
  std::string worker{};  // who holds (or last held) the lease
  std::vector<JobAttempt> history{};
  friend bool operator==(const Job&, const Job&) = default;
};
void to_json(nlohmann::json& out, const Job& job);
void from_json(const nlohmann::json& in, Job& job);

void to_json(nlohmann::json& out, const JobAttempt& attempt);
void from_json(const nlohmann::json& in, JobAttempt& attempt);

}  // namespace strand
