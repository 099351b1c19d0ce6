// bench/ratio_table.hpp — what every strand benchmark program prints after Google Benchmark's own
// output: a table of ours / peer ratios, each against the target where it has one.
//
//   int main(int argc, char** argv) {
//     return strand::bench::run(argc, argv, register_benchmarks, kRows, "ns per task");
//   }
//
// A row compares two registered benchmarks by a counter (e.g. "per_task", a time per unit) or, when
// the row names no counter, by real time per iteration. With --benchmark_repetitions, each
// benchmark's fastest repetition is kept: the least disturbed one on a shared, noisy machine.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdio>
#include <map>
#include <span>
#include <string>
#include <vector>

namespace strand::bench {

struct Result {
  double real_ms = 0;  // per iteration
  std::map<std::string, double> counters;
};

struct Ratio {
  const char* label;
  const char* ours;     // benchmark name
  const char* peer;     // benchmark name
  const char* target;   // e.g. "<= 0.80"; "" for a row shown for information only
  double limit = 0;     // the target's number
  bool strict = false;  // "<" rather than "<="
  const char* counter =
      "";  // compare this counter (scaled by `scale`); "" for real ms per iteration
  double scale = 1;
  bool higher_is_better = false;  // a rate (ours / peer is still printed; met if >= limit)
};

// The console output as usual, and each benchmark's result kept for the ratio table.
class RecordingReporter : public benchmark::ConsoleReporter {
 public:
  RecordingReporter() : ConsoleReporter(OO_Tabular) {}  // no colour: the output often goes to a log

  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      if (run.run_type != Run::RT_Iteration || run.error_occurred) continue;
      // benchmark_name() carries the options ("/iterations:5/real_time"); the table wants the
      // registered name.
      const std::string& name = run.run_name.function_name;
      Result result{run.GetAdjustedRealTime(), {}};
      for (const auto& [key, counter] : run.counters) result.counters[key] = counter.value;
      auto [slot, fresh] = results_.try_emplace(name, result);
      if (!fresh && result.real_ms < slot->second.real_ms) slot->second = result;
    }
  }

  [[nodiscard]] const std::map<std::string, Result>& results() const { return results_; }

 private:
  std::map<std::string, Result> results_;
};

inline void print_ratios(const std::map<std::string, Result>& results, std::span<const Ratio> rows,
                         const char* unit) {
  std::printf("\nRatios, ours / peer (%s)\n", unit);
  std::printf("%-44s %12s %12s %7s %8s  %s\n", "", "ours", "peer", "ratio", "target", "verdict");
  for (const Ratio& row : rows) {
    const auto ours = results.find(row.ours);
    const auto peer = results.find(row.peer);
    if (ours == results.end() || peer == results.end()) {
      std::printf("%-44s %12s\n", row.label, "no result");
      continue;
    }
    const auto value = [&](const Result& r) {
      if (row.counter[0] == '\0') return r.real_ms;
      const auto it = r.counters.find(row.counter);
      return it == r.counters.end() ? 0.0 : it->second * row.scale;
    };
    const double a = value(ours->second);
    const double b = value(peer->second);
    const double ratio = b != 0 ? a / b : 0;
    const char* verdict = "";
    if (row.target[0] != '\0') {
      const bool met = row.higher_is_better ? ratio >= row.limit
                       : row.strict         ? ratio < row.limit
                                            : ratio <= row.limit;
      verdict = met ? "met" : "MISSED";
    }
    std::printf("%-44s %12.3f %12.3f %7.3f %8s  %s\n", row.label, a, b, ratio, row.target, verdict);
  }
}

// Registers a benchmark timed in real milliseconds with a fixed number of iterations: what every
// comparison here wants (a fixed amount of work keeps a run short and the peers comparable).
inline void add(const char* name, void (*fn)(benchmark::State&), int iterations) {
  benchmark::RegisterBenchmark(name, fn)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime()
      ->Iterations(iterations);
}

// Google Benchmark's main, with the table at the end.
inline int run(int argc, char** argv, void (*register_benchmarks)(), std::span<const Ratio> rows,
               const char* unit) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  register_benchmarks();
  RecordingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  print_ratios(reporter.results(), rows, unit);
  return 0;
}

}  // namespace strand::bench
