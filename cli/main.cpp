// The strand program.
#include <CLI/CLI.hpp>
#include <iostream>
#include <utility>
#include <vector>

#include "demo.hpp"
#include "jobs.hpp"
#include "worker.hpp"

int main(int argc, char** argv) {
  CLI::App app{"strand: make any blocking function a non-blocking task"};
  app.set_version_flag("--version", std::string("strand 0.1.0"));
  app.require_subcommand(1);

  strand::cli::DemoOptions demo;
  auto* demo_cmd = app.add_subcommand("demo", "run the guided tour (threads, pool, handles)");
  demo_cmd->add_option("--total", demo.total, "size of the range the long function produces")
      ->check(CLI::PositiveNumber);
  demo_cmd->add_option("--chunk", demo.chunk, "chunk size it yields")->check(CLI::PositiveNumber);
  demo_cmd->add_option("--tasks", demo.tasks, "pool tasks in the batch")
      ->check(CLI::PositiveNumber);
  demo_cmd->add_option("--store", demo.store,
                       "store URL for the computations; default: $STRAND_STORE or the embedded "
                       "SQLite store");

  strand::cli::JobsOptions jobs;
  auto* jobs_cmd = app.add_subcommand("jobs", "list, inspect, wait for and manage stored jobs");
  jobs_cmd->require_subcommand(1);
  jobs_cmd->add_option("--store", jobs.store,
                       "store URL (memory:, file:///dir, sqlite:///file.db); default: "
                       "$STRAND_STORE or the embedded SQLite store");
  using Command = int (*)(const strand::cli::JobsOptions&, std::ostream&, std::ostream&);
  struct Sub {
    const char* name;
    const char* help;
    Command run;
    bool takes_keys;
  };
  const Sub subs[] = {
      {"ls", "list the jobs in a table", strand::cli::jobs_ls, false},
      {"show", "print jobs' records as JSON", strand::cli::jobs_show, true},
      {"wait", "wait for jobs, with a progress bar", strand::cli::jobs_wait, true},
      {"cancel", "cancel jobs that have not finished", strand::cli::jobs_cancel, true},
      {"rm", "remove jobs' records", strand::cli::jobs_rm, true},
      {"cleanup", "remove expired records", strand::cli::jobs_cleanup, false},
  };
  std::vector<std::pair<CLI::App*, Command>> commands;
  for (const Sub& sub : subs) {
    auto* cmd = jobs_cmd->add_subcommand(sub.name, sub.help);
    cmd->fallthrough();  // --store may come after the command too
    if (sub.takes_keys) {
      cmd->add_option("keys", jobs.keys, "job keys")->required();
    } else if (sub.run == strand::cli::jobs_ls) {
      cmd->add_option("keys", jobs.keys, "list only these jobs");
    }
    if (sub.run == strand::cli::jobs_wait) {
      cmd->add_option("--timeout", jobs.timeout_seconds, "give up after this many seconds")
          ->check(CLI::NonNegativeNumber);
    }
    commands.emplace_back(cmd, sub.run);
  }

  strand::cli::WorkerCommand worker;
  auto* worker_cmd =
      app.add_subcommand("worker", "run the jobs of a store with the functions of plugins");
  worker_cmd->add_option("--store", worker.store,
                         "store URL (file:///dir, sqlite:///file.db, redis://host:port/db); "
                         "default: $STRAND_STORE or the embedded SQLite store");
  worker_cmd
      ->add_option("--plugin", worker.plugins,
                   "shared library exporting strand_register (STRAND_PLUGIN); repeatable")
      ->required();
  worker_cmd->add_option("--concurrency", worker.concurrency, "jobs at once")
      ->check(CLI::PositiveNumber);
  worker_cmd->add_option("--queue", worker.queues, "queues to take jobs from; repeatable");
  worker_cmd->add_option("--isolation", worker.isolation,
                         "thread, or process (a forked child per job)");
  worker_cmd->add_option("--lease", worker.lease_seconds, "lease in seconds")
      ->check(CLI::Range(0.03, 86400.0));
  worker_cmd->add_option("--name", worker.name, "name in the jobs' history");

  CLI11_PARSE(app, argc, argv);
  if (worker_cmd->parsed()) return strand::cli::run_worker(worker, std::cout, std::cerr);
  if (demo_cmd->parsed()) return strand::cli::run_demo(demo, std::cout);
  for (const auto& [cmd, run] : commands) {
    if (cmd->parsed()) return run(jobs, std::cout, std::cerr);
  }
  return 0;
}
