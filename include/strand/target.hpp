// strand/target.hpp — where a runner runs its function: tags and their string names.
//
//   strand::as_task(strand::pool, f)   // a tag, checked at compile time
//   strand::as_task("pool", f)         // a string, e.g. from a config file, checked at run time
#pragma once

#include <span>
#include <string_view>

namespace strand {

enum class Target {
  sync,     // in the calling thread, before the call returns
  thread,   // a thread of its own per call (one an earlier call left idle for up to 5 s, else new)
  pool,     // a worker of a ThreadPool (strand::default_pool() unless use_pool(...) says otherwise)
  process,  // a forked child process; the result comes back serialized (strand/process.hpp)
  coroutine,  // a coroutine on the caller's EventLoop, or on strand::default_loop() outside one
};

template <Target T>
struct TargetTag {
  static constexpr Target value = T;
};
inline constexpr TargetTag<Target::sync> sync{};
inline constexpr TargetTag<Target::thread> thread{};
inline constexpr TargetTag<Target::pool> pool{};
inline constexpr TargetTag<Target::process> process{};

inline constexpr TargetTag<Target::coroutine> coroutine{};

// "sync", "thread", "pool", "process", "coroutine".
[[nodiscard]] std::string_view to_string(Target target) noexcept;

// Every target this build knows, in the order to_string names them.
[[nodiscard]] std::span<const Target> all_targets() noexcept;

// The target named `name`. Throws std::invalid_argument naming every valid target, e.g.
// `strand: unknown task target "nope"; valid targets are: sync, thread, pool, process,
// coroutine`.
[[nodiscard]] Target parse_target(std::string_view name);

}  // namespace strand
