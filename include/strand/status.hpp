// strand/status.hpp — the six words every handle speaks.
//
// Every way of running work in strand (sync, thread, pool, process, store, worker) reports its
// progress with the same `Status`, so code that watches a task never needs to know where it runs.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string_view>

namespace strand {

enum class Status : std::uint8_t {
  pending,    // known, but not yet handed to anything that will run it (e.g. a continuation)
  queued,     // waiting in an executor's queue or a store; cancelling it means it never starts
  running,    // its function is executing now
  completed,  // finished with a value
  failed,     // finished with an exception; `get()` rethrows it
  cancelled,  // will never produce a value; `get()` throws strand::Cancelled
};

// "pending", "queued", "running", "completed", "failed", "cancelled".
[[nodiscard]] std::string_view to_string(Status status) noexcept;

// The inverse of to_string; std::nullopt for a word that is not a status.
[[nodiscard]] std::optional<Status> status_from_string(std::string_view word) noexcept;

// True for the three states a task never leaves: completed, failed, cancelled.
[[nodiscard]] constexpr bool is_terminal(Status status) noexcept {
  return status == Status::completed || status == Status::failed || status == Status::cancelled;
}

std::ostream& operator<<(std::ostream& out, Status status);

}  // namespace strand
