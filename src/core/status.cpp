#include "strand/status.hpp"

#include <array>
#include <ostream>

namespace strand {
namespace {
constexpr std::array<std::string_view, 6> kNames = {"pending",   "queued", "running",
                                                    "completed", "failed", "cancelled"};
}  // namespace

std::string_view to_string(Status status) noexcept {
  const auto i = static_cast<std::size_t>(status);
  return i < kNames.size() ? kNames[i] : std::string_view("unknown");
}

std::optional<Status> status_from_string(std::string_view word) noexcept {
  for (std::size_t i = 0; i < kNames.size(); ++i) {
    if (kNames[i] == word) return static_cast<Status>(i);
  }
  return std::nullopt;
}

std::ostream& operator<<(std::ostream& out, Status status) {
  return out << to_string(status);
}

}  // namespace strand
