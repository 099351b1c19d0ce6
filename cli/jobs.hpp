// `strand jobs ls|show|wait|cancel|rm|cleanup --store URL`: look at and act on the computations
// kept in a store.
#pragma once

#include <chrono>
#include <iosfwd>
#include <string>
#include <vector>

namespace strand::cli {

// The embedded default store: $STRAND_STORE if set, else an SQLite file under the user's data
// directory ($XDG_DATA_HOME, or ~/.local/share, or the temporary directory).
[[nodiscard]] std::string default_store_url();

struct JobsOptions {
  std::string store;              // URL; empty means default_store_url()
  std::vector<std::string> keys;  // for show, wait, cancel, rm; ls lists only these if given
  double timeout_seconds = 0;     // wait: 0 means no limit
};

// Each returns the process exit code: 0 on success; for wait, 0 if every job completed, 1 if one
// failed or was cancelled, 2 on timeout; 3 for a bad store or key (the error is written to `err`).
int jobs_ls(const JobsOptions& options, std::ostream& out, std::ostream& err);
int jobs_show(const JobsOptions& options, std::ostream& out, std::ostream& err);
int jobs_wait(const JobsOptions& options, std::ostream& out, std::ostream& err);
int jobs_cancel(const JobsOptions& options, std::ostream& out, std::ostream& err);
int jobs_rm(const JobsOptions& options, std::ostream& out, std::ostream& err);
int jobs_cleanup(const JobsOptions& options, std::ostream& out, std::ostream& err);

// One line of a progress bar: "[#########...........]  45%  message".
[[nodiscard]] std::string progress_bar(double fraction, const std::string& message, int width = 30);

}  // namespace strand::cli
