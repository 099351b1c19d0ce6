// strand/process.hpp — the process target: each call runs in a forked child.
//
//   auto square = strand::ProcessTaskrunner([](int x) { return x * x; });
//   strand::Handle<int> h = square(7);      // forks now; returns at once
//   h.get();                                // 49, sent back over a pipe
//
//   auto task = strand::as_task(strand::process, f, strand::on_iter(show),
//                               strand::ProcessOptions{.grace = 200ms, .timeout = 5s});
//
// What crosses back to the parent is serialized (strand/serialize.hpp): the result, each element
// of a range or Generator the function returns (sent as the child produces it, so `on_iter` in the
// parent sees it at once), or the exception, as its type name and message. Arguments need not be
// serializable: the child is a copy of the parent, arguments included. `on_iter`, `on_end` and
// `on_error` run in the parent, on the thread that watches the child; `on_error` sees every
// failure: the function's exception, a crash (ProcessCrashed), a timeout.
//
// A child that crashes (a signal, `exit(3)`, an exception that is not a std::exception, running out
// of its memory limit) fails its handle with ProcessCrashed saying what happened; the parent and
// other tasks carry on. `cancel()` sends SIGTERM, then SIGKILL after ProcessOptions::grace; the
// handle reads cancelled at once. Every child is reaped by the thread that watches it.
//
// Forking a multithreaded program copies only the calling thread. strand's own locks are taken
// around fork() so the child never inherits one held by a vanished thread, and the child gets a
// fresh strand::default_pool() on first use. Locks of other libraries (and your own) have no such
// guard: in the child, do not touch a mutex another thread of the parent might have held, and do
// not use a ThreadPool other than default_pool() that the parent made. See the README.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <ranges>
#include <stop_token>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

#include "strand/callbacks.hpp"
#include "strand/detail/state.hpp"
#include "strand/errors.hpp"
#include "strand/handle.hpp"
#include "strand/serialize.hpp"

namespace strand {

// A process task's child ended without delivering a result: a signal, an exit code, an exception
// that is not a std::exception, its memory limit, or a malformed result pipe. what() says which,
// e.g. "strand: process task (pid 4242) was killed by signal 11 (SIGSEGV)".
class ProcessCrashed : public Error {
 public:
  ProcessCrashed(const std::string& what, int pid, int signal, int exit_code)
      : Error(what), pid_(pid), signal_(signal), exit_code_(exit_code) {}
  [[nodiscard]] int pid() const noexcept { return pid_; }
  // The signal that ended the child, or 0.
  [[nodiscard]] int signal() const noexcept { return signal_; }
  // The child's exit code, or -1 if a signal ended it.
  [[nodiscard]] int exit_code() const noexcept { return exit_code_; }

 private:
  int pid_;
  int signal_;
  int exit_code_;
};

// How many process tasks have a child that is not yet reaped (a cancelled task's handle reads
// cancelled at once; its child goes within the grace period).
[[nodiscard]] std::size_t live_process_tasks() noexcept;
// Waits until live_process_tasks() is 0; false if `timeout` passed first.
bool wait_process_tasks_reaped(std::chrono::nanoseconds timeout);

namespace detail {

enum class FrameKind : std::uint8_t {
  item = 1,   // one element of a streamed range
  value = 2,  // the result (empty for void)
  error = 3,  // an ErrorInfo: the function threw a std::exception
  crash = 4,  // a text: the child is about to end without a result (bad_alloc, a non-std throw)
};

// The child's end of the result pipe.
class ResultPipe {
 public:
  explicit ResultPipe(int fd) noexcept : fd_(fd) {}
  // Writes one frame whole; if the parent is gone, the child exits.
  void send(FrameKind kind, std::string_view payload) const noexcept;

 private:
  int fd_;
};

// The parent's side of one process task, driven by the thread that watches the child.
class ProcessSink {
 public:
  virtual ~ProcessSink() = default;
  [[nodiscard]] virtual StateBase& state() noexcept = 0;
  // A streamed element arrived: decode it and call on_iter. May throw (a decode error, on_iter).
  virtual void item(std::string_view payload) = 0;
  // The result arrived: decode and keep it. May throw a DecodeError.
  virtual void value(std::string_view payload) = 0;
  // The child ended well: on_end, then complete the handle. May throw (on_end).
  virtual void succeed() = 0;
  // The task failed: the function threw, the child crashed or timed out, or a payload did not
  // decode. on_error sees each of these.
  virtual void fail(std::exception_ptr error) noexcept = 0;
};

// Runs in the child: the call, sending its element/value frames. Exceptions are the caller's.
using ChildMain = void (*)(const void* context, const ResultPipe& pipe);

// Forks a child that runs `main(context, pipe)`, and a thread in the parent that feeds `sink`,
// enforces the options, reaps the child and finishes the handle.
void spawn_process(std::unique_ptr<ProcessSink> sink, ChildMain main, const void* context,
                   const ProcessOptions& options);

template <bool Iterating, class V>
struct element_of {
  using type = void;
};
template <class V>
struct element_of<true, V> {
  using type = std::ranges::range_value_t<V>;
};

template <class Config, class... A>
struct process_call {
  using raw = decltype(std::declval<const Config&>().call(std::declval<const std::stop_token&>(),
                                                          std::declval<A&>()...));
  using value = std::remove_cvref_t<raw>;
  static constexpr bool iterating = Config::has_iter && std::ranges::input_range<value>;
  using element = typename element_of<iterating, value>::type;  // void unless iterating
  using result = std::conditional_t<iterating, void, value>;
  // What has to cross the pipe.
  using crossing = std::conditional_t<iterating, element, result>;
  static constexpr bool serializable = std::is_void_v<crossing> || Serializable<crossing>;
};

template <class Config, class R, class Element>
class TypedProcessSink final : public ProcessSink {
 public:
  TypedProcessSink(std::shared_ptr<const Config> config, StateRef<State<R>> state)
      : config_(std::move(config)), state_(std::move(state)) {}

  StateBase& state() noexcept override { return *state_; }

  void item(std::string_view payload) override {
    if constexpr (!std::is_void_v<Element>) {
      Element element = decode<Element>(payload);
      if (state_->status() != Status::cancelled) config_->iter.f(element);
    }
  }

  void value(std::string_view payload) override {
    if constexpr (!std::is_void_v<R>) value_.emplace(decode<R>(payload));
  }

  void succeed() override {
    if constexpr (std::is_void_v<R>) {
      if constexpr (Config::has_end) invoke_callback(config_->end);
      state_->set_value();
    } else {
      if (!value_) throw ProcessCrashed("strand: process task ended without its result", 0, 0, 0);
      if constexpr (Config::has_end) invoke_callback(config_->end, std::as_const(*value_));
      state_->set_value(std::move(*value_));
    }
  }

  void fail(std::exception_ptr error) noexcept override {
    if constexpr (Config::has_error) {
      if (state_->status() != Status::cancelled) invoke_error_callback(config_->error, error);
    }
    state_->set_exception(std::move(error));
  }

 private:
  std::shared_ptr<const Config> config_;
  StateRef<State<R>> state_;
  std::optional<std::conditional_t<std::is_void_v<R>, int, R>> value_;
};

// The child's half of one call: runs the function, sends what it produced.
template <class Config, class... A>
struct ChildCall {
  const Config& config;
  std::tuple<A...>& args;

  static void run(const void* context, const ResultPipe& pipe) {
    using call = process_call<Config, A...>;
    auto& self = *static_cast<const ChildCall*>(context);
    const std::stop_token never_stopped;  // the child is stopped by SIGTERM, not by a token
    std::apply(
        [&](auto&... a) {
          if constexpr (call::iterating) {
            auto&& range = self.config.call(never_stopped, a...);
            for (auto&& element : range) pipe.send(FrameKind::item, encode(element));
            pipe.send(FrameKind::value, {});
          } else if constexpr (std::is_void_v<typename call::result>) {
            self.config.call(never_stopped, a...);
            pipe.send(FrameKind::value, {});
          } else {
            pipe.send(FrameKind::value, encode(self.config.call(never_stopped, a...)));
          }
        },
        self.args);
  }
};

// Starts config.call(args...) in a child process; the handle completes in the parent.
template <class Config, class... A>
auto launch_process(std::shared_ptr<const Config> config, const ProcessOptions& options,
                    std::tuple<A...> args) {
  using call = process_call<Config, A...>;
  using R = typename call::result;
  using Element = typename call::element;
  auto state = StateRef<State<R>>::adopt(make_state<PlainState<R>>(Status::running, 1));
  state->enable_stop();
  const ChildCall<Config, A...> child{*config, args};
  spawn_process(std::make_unique<TypedProcessSink<Config, R, Element>>(config, state),
                &ChildCall<Config, A...>::run, &child, options);
  return Handle<R>(std::move(state));
}

}  // namespace detail
}  // namespace strand
