// The strand program.
#include <CLI/CLI.hpp>
#include <iostream>

#include "demo.hpp"

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

  CLI11_PARSE(app, argc, argv);
  if (demo_cmd->parsed()) return strand::cli::run_demo(demo, std::cout);
  return 0;
}
