#include "strand/target.hpp"

#include <array>
#include <stdexcept>
#include <string>

namespace strand {
namespace {
constexpr std::array kTargets = {Target::sync, Target::thread, Target::pool, Target::process,
                                 Target::coroutine};
}  // namespace

std::string_view to_string(Target target) noexcept {
  switch (target) {
    case Target::sync:
      return "sync";
    case Target::thread:
      return "thread";
    case Target::pool:
      return "pool";
    case Target::process:
      return "process";
    case Target::coroutine:
      return "coroutine";
  }
  return "unknown";
}

std::span<const Target> all_targets() noexcept {
  return kTargets;
}

Target parse_target(std::string_view name) {
  for (Target t : kTargets) {
    if (to_string(t) == name) return t;
  }
  std::string message =
      "strand: unknown task target \"" + std::string(name) + "\"; valid targets are: ";
  for (std::size_t i = 0; i < kTargets.size(); ++i) {
    if (i != 0) message += ", ";
    message += to_string(kTargets[i]);
  }
  throw std::invalid_argument(message);
}

}  // namespace strand
