// strand/runner.hpp — the Taskrunners: a function plus where and how to run it.
//
//   void handle_chunk(const std::vector<int>& chunk);
//   strand::Generator<std::vector<int>> long_blocking_function(int total, int chunk);
//
//   auto runner = strand::ThreadTaskrunner(long_blocking_function, strand::on_iter(handle_chunk));
//   strand::Handle<void> h = runner(100'000'000, 1'000);   // returns at once; runs in a thread
//
//   auto add_to = strand::PoolTaskrunner([](int base, int x) { return base + x; }, 100);
//   add_to(5).get();                                         // 105: init args come first
//
// Taskrunner (sync), ThreadTaskrunner (a thread of its own per call: one an earlier call left idle,
// else a new one) and PoolTaskrunner (a ThreadPool) take the function, then in any order: init
// arguments, prepended to every call's arguments (the seed's partial invocation), and the options
// of strand/callbacks.hpp. Calling a runner copies the call's arguments into the task (as
// std::thread does; use std::ref to share) and returns a Handle at once. If the function takes a
// std::stop_token first, it gets one that Handle::cancel() requests.
//
// as_task picks the runner by tag or by name:
//   auto task = strand::as_task(f);                      // thread, the default
//   auto task = strand::as_task(strand::pool, f, strand::on_end(print));
//   auto task = strand::as_task("sync", f);              // std::invalid_argument for unknown names
#pragma once

#include <concepts>
#include <exception>
#include <memory>
#include <ranges>
#include <stdexcept>
#include <stop_token>
#include <string_view>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>

#include "strand/callbacks.hpp"
#include "strand/coro.hpp"
#include "strand/detail/own_thread.hpp"
#include "strand/event_loop.hpp"
#include "strand/handle.hpp"
#include "strand/process.hpp"
#include "strand/target.hpp"
#include "strand/thread_pool.hpp"

namespace strand {
namespace detail {

template <template <class> class Opt, class T>
struct is_option_of : std::false_type {};
template <template <class> class Opt, class F>
struct is_option_of<Opt, Opt<F>> : std::true_type {};

// The option of kind Opt among Parts (NoCallback if absent).
template <template <class> class Opt, class... Parts>
struct option_of {
  static constexpr std::size_t count = (std::size_t{is_option_of<Opt, Parts>::value} + ... + 0);
  static_assert(count <= 1,
                "strand: the same callback option (on_iter, on_end or on_error) was "
                "given twice");
  using type = decltype(std::tuple_cat(
      std::declval<std::conditional_t<is_option_of<Opt, Parts>::value, std::tuple<Parts>,
                                      std::tuple<>>>()...,
      std::declval<std::tuple<NoCallback>>()));
  template <class... P>
  static auto pick(P&... parts) {
    return std::get<0>(std::tuple_cat(
        [](auto& p) {
          if constexpr (is_option_of<Opt, std::remove_cvref_t<decltype(p)>>::value) {
            return std::tuple(p);
          } else {
            return std::tuple<>();
          }
        }(parts)...,
        std::tuple<NoCallback>()));
  }
};

template <class... Parts>
using init_tuple_t = decltype(std::tuple_cat(
    std::declval<std::conditional_t<is_option_v<Parts>, std::tuple<>, std::tuple<Parts>>>()...));

template <class... P>
auto pick_init(P&... parts) {
  return std::tuple_cat([](auto& p) {
    if constexpr (is_option_v<decltype(p)>) {
      return std::tuple<>();
    } else {
      return std::tuple<std::remove_cvref_t<decltype(p)>>(std::move(p));
    }
  }(parts)...);
}

inline ProcessOptions pick_process_options(const auto&... parts) {
  ProcessOptions options;
  (
      [&](const auto& p) {
        if constexpr (std::is_same_v<std::remove_cvref_t<decltype(p)>, ProcessOptions>) options = p;
      }(parts),
      ...);
  return options;
}

inline bool pick_yield_on_iter(const auto&... parts) {
  bool yield = true;
  (
      [&](const auto& p) {
        if constexpr (std::is_same_v<std::remove_cvref_t<decltype(p)>, YieldOnIter>) {
          yield = p.yield;
        }
      }(parts),
      ...);
  return yield;
}

inline ThreadPool* pick_pool(const auto&... parts) {
  ThreadPool* pool = nullptr;
  (
      [&](const auto& p) {
        if constexpr (std::is_same_v<std::remove_cvref_t<decltype(p)>, UsePool>) pool = p.pool;
      }(parts),
      ...);
  return pool;
}

// Everything a call needs besides its own arguments; shared (immutable) by every call of a runner,
// since tasks may outlive the runner.
template <class F, class... Parts>
struct RunnerConfig {
  F function;
  init_tuple_t<Parts...> init;
  std::tuple_element_t<0, typename option_of<OnIter, Parts...>::type> iter;
  std::tuple_element_t<0, typename option_of<OnEnd, Parts...>::type> end;
  std::tuple_element_t<0, typename option_of<OnError, Parts...>::type> error;
  ThreadPool* pool;
  ProcessOptions process_options;
  bool yield_on_iter;  // coroutine target: yield to the loop between on_iter calls

  static constexpr bool has_iter = !std::is_same_v<decltype(iter), NoCallback>;
  static constexpr bool has_end = !std::is_same_v<decltype(end), NoCallback>;
  static constexpr bool has_error = !std::is_same_v<decltype(error), NoCallback>;

  explicit RunnerConfig(F f, Parts... parts)
      : function(std::move(f)),
        init(pick_init(parts...)),
        iter(option_of<OnIter, Parts...>::pick(parts...)),
        end(option_of<OnEnd, Parts...>::pick(parts...)),
        error(option_of<OnError, Parts...>::pick(parts...)),
        pool(pick_pool(parts...)),
        process_options(pick_process_options(parts...)),
        yield_on_iter(pick_yield_on_iter(parts...)) {}

  // f(init..., args...), with a stop_token first if f takes one.
  template <class... A>
  decltype(auto) call(const std::stop_token& token, A&... args) const {
    return std::apply(
        [&](const auto&... init_args) -> decltype(auto) {
          return invoke_maybe_stoppable(function, token, init_args..., args...);
        },
        init);
  }
};

template <class V>
struct unwrap_coro {
  using type = V;
};
template <class X>
struct unwrap_coro<Coro<X>> {
  using type = X;
};

// The function's result; a function returning Coro<X> gives X (run on a loop of its own when the
// target is not the coroutine target).
template <class Config, class... A>
decltype(auto) call_value(const Config& cfg, const std::stop_token& token, A&... args) {
  if constexpr (is_coro_v<decltype(cfg.call(token, args...))>) {
    return run(cfg.call(token, args...));
  } else {
    return cfg.call(token, args...);
  }
}

template <class Config, class... A>
struct call_result {
  using raw = decltype(std::declval<const Config&>().call(std::declval<const std::stop_token&>(),
                                                          std::declval<A&>()...));
  using value = typename unwrap_coro<std::remove_cvref_t<raw>>::type;
  static constexpr bool iterating = Config::has_iter && std::ranges::input_range<value>;
  static_assert(!Config::has_iter || std::ranges::input_range<value>,
                "strand: on_iter needs a function that returns a range or a strand::Generator");
  using type = std::conditional_t<iterating, void, value>;
};

// Whether f takes a std::stop_token before its init and call arguments.
template <class F, class Init, class... A>
struct takes_token_first;
template <class F, class... I, class... A>
struct takes_token_first<F, std::tuple<I...>, A...>
    : std::bool_constant<std::is_invocable_v<const F&, std::stop_token, const I&..., A&...>> {};

// Whether f can be called, as const, with its init and call arguments (a stop_token first or not).
template <class F, class Init, class... A>
struct callable_with;
template <class F, class... I, class... A>
struct callable_with<F, std::tuple<I...>, A...>
    : std::bool_constant<std::is_invocable_v<const F&, const I&..., A&...> ||
                         takes_token_first<F, std::tuple<I...>, A...>::value> {};

// Runs one call: the function, then on_iter per element / on_end, completing `state`.
template <class Config, class R, class... A>
void run_call(const Config& cfg, State<R>& state, const std::stop_token& token,
              A&... args) noexcept {
  using result = call_result<Config, A...>;
  const auto cancelled = [&] {
    return state.status() == Status::cancelled;
  };
  try {
    if constexpr (result::iterating) {
      auto&& range = call_value(cfg, token, args...);
      for (auto&& item : range) {
        if (cancelled()) return;  // the handle already reads cancelled; stop producing
        cfg.iter.f(item);
      }
      if (cancelled()) return;
      if constexpr (Config::has_end) invoke_callback(cfg.end);
      state.set_value();
    } else if constexpr (std::is_void_v<R>) {
      call_value(cfg, token, args...);
      if (cancelled()) return;
      if constexpr (Config::has_end) invoke_callback(cfg.end);
      state.set_value();
    } else {
      R value = call_value(cfg, token, args...);
      if (cancelled()) return;
      if constexpr (Config::has_end) invoke_callback(cfg.end, std::as_const(value));
      state.set_value(std::move(value));
    }
  } catch (...) {
    auto error = std::current_exception();
    if constexpr (Config::has_error) {
      if (!cancelled()) invoke_error_callback(cfg.error, error);
    }
    state.set_exception(std::move(error));
  }
}

// Cancels a call's state if the coroutine running it is destroyed before finishing it (its loop
// was destroyed), so the handle does not wait forever.
template <class R>
struct CancelIfUnfinished {
  StateRef<State<R>> state;
  explicit CancelIfUnfinished(StateRef<State<R>> s) noexcept : state(std::move(s)) {}
  CancelIfUnfinished(const CancelIfUnfinished&) = delete;
  CancelIfUnfinished& operator=(const CancelIfUnfinished&) = delete;
  ~CancelIfUnfinished() {
    if (!state->ready()) state->cancel();
  }
};

// The coroutine target: one call as a coroutine. A plain function runs inside the loop; one that
// returns Coro<X> is awaited; with on_iter, the loop gets a turn between elements if the
// runner's yield_on_iter says so.
template <class Config, class R, class... A>
Coro<void> run_call_in_loop(std::shared_ptr<const Config> cfg, StateRef<State<R>> state,
                            A... args) {
  CancelIfUnfinished<R> guard{state};
  if (!state->try_start()) co_return;
  const std::stop_token token = state->stop_token();
  using result = call_result<Config, A...>;
  using raw = std::remove_cvref_t<typename result::raw>;
  const auto cancelled = [&] {
    return state->status() == Status::cancelled;
  };
  if constexpr (!result::iterating && !is_coro_v<raw>) {
    run_call(*cfg, *state, token, args...);
  } else {
    std::exception_ptr error;
    try {
      if constexpr (result::iterating) {
        static_assert(!is_coro_v<raw>,
                      "strand: with on_iter, the coroutine target needs a function that returns "
                      "a range or a strand::Generator, not a Coro");
        auto&& range = cfg->call(token, args...);
        for (auto&& item : range) {
          if (cancelled()) co_return;
          cfg->iter.f(item);
          if (cfg->yield_on_iter) co_await yield();
        }
        if (cancelled()) co_return;
        if constexpr (Config::has_end) invoke_callback(cfg->end);
        state->set_value();
      } else if constexpr (std::is_void_v<R>) {
        co_await cfg->call(token, args...);
        if (cancelled()) co_return;
        if constexpr (Config::has_end) invoke_callback(cfg->end);
        state->set_value();
      } else {
        R value = co_await cfg->call(token, args...);
        if (cancelled()) co_return;
        if constexpr (Config::has_end) invoke_callback(cfg->end, std::as_const(value));
        state->set_value(std::move(value));
      }
    } catch (...) {
      error = std::current_exception();
    }
    if (error) {
      if constexpr (Config::has_error) {
        if (!cancelled()) invoke_error_callback(cfg->error, error);
      }
      state->set_exception(std::move(error));
    }
  }
}

template <class R, class Config, class... A>
Handle<R> launch_in_loop(std::shared_ptr<const Config> cfg, bool stoppable, A... args) {
  auto state = StateRef<State<R>>::adopt(make_state<PlainState<R>>(Status::queued));
  if (stoppable) state->enable_stop();
  EventLoop* loop = EventLoop::current();
  if (loop == nullptr) loop = &default_loop();
  (void)loop->spawn(run_call_in_loop<Config, R, A...>(std::move(cfg), state, std::move(args)...));
  return Handle<R>(std::move(state));
}

template <class R, class Config, class... A>
Coro<R> await_call(std::shared_ptr<const Config> cfg, bool stoppable, A... args) {
  auto state = StateRef<State<R>>::adopt(make_state<PlainState<R>>(Status::queued));
  if (stoppable) state->enable_stop();
  co_await run_call_in_loop<Config, R, A...>(std::move(cfg), state, std::move(args)...);
  if constexpr (std::is_void_v<R>) {
    Handle<R>(std::move(state)).get();
  } else {
    co_return R(Handle<R>(std::move(state)).get());
  }
}

}  // namespace detail

// A runner whose target is chosen at run time (what as_task returns). The named runners below fix
// the target at compile time.
template <class F, class... Parts>
class Runner {
  static_assert(!std::is_same_v<std::decay_t<F>, std::string_view>,
                "strand: the first argument after the target must be the function");

 public:
  using config_type = detail::RunnerConfig<F, Parts...>;

  Runner(Target target, F f, Parts... parts)
      : config_(std::make_shared<const config_type>(std::move(f), std::move(parts)...)),
        target_(target) {}

  // Starts f(init..., args...) on the runner's target and returns its handle at once.
  template <class... Args>
  auto operator()(Args&&... args) const {
    constexpr bool callable =
        detail::callable_with<F, detail::init_tuple_t<Parts...>, std::decay_t<Args>...>::value;
    static_assert(callable,
                  "strand: the runner's function cannot be called as const with its init "
                  "arguments followed by these arguments (a runner may call its function from "
                  "several threads at once, so a lambda must not be `mutable`)");
    if constexpr (callable) {
      using R = typename detail::call_result<config_type, std::decay_t<Args>...>::type;
      if (target_ == Target::process) {
        return launch_in_process<R>(std::decay_t<Args>(std::forward<Args>(args))...);
      }
      constexpr bool stoppable = detail::takes_token_first<F, detail::init_tuple_t<Parts...>,
                                                           std::decay_t<Args>...>::value;
      if (target_ == Target::coroutine) {
        return detail::launch_in_loop<R>(config_, stoppable,
                                         std::decay_t<Args>(std::forward<Args>(args))...);
      }
      auto body = [config = config_, ... a = std::decay_t<Args>(std::forward<Args>(args))](
                      detail::State<R>& state, const std::stop_token& token) mutable noexcept {
        detail::run_call(*config, state, token, a...);
      };
      return launch<R>(std::move(body), stoppable);
    } else {
      return Handle<void>();  // never reached: the static_assert above has failed
    }
  }

  [[nodiscard]] Target target() const noexcept { return target_; }

  // For a caller already in a coroutine: the call as a Coro<R> to co_await, run in the caller's
  // coroutine (with the coroutine target's yields between on_iter calls) instead of on the target.
  template <class... Args>
  auto awaitable(Args&&... args) const {
    using R = typename detail::call_result<config_type, std::decay_t<Args>...>::type;
    constexpr bool stoppable =
        detail::takes_token_first<F, detail::init_tuple_t<Parts...>, std::decay_t<Args>...>::value;
    return detail::await_call<R>(config_, stoppable,
                                 std::decay_t<Args>(std::forward<Args>(args))...);
  }

 private:
  template <class R, class... A>
  Handle<R> launch_in_process(A... args) const {
    using call = detail::process_call<config_type, A...>;
    if constexpr (call::serializable) {
      return detail::launch_process(config_, config_->process_options,
                                    std::tuple<A...>(std::move(args)...));
    } else {
      throw std::invalid_argument(
          "strand: the process target needs a result that can cross a process boundary, and " +
          type_name<typename call::crossing>() +
          " cannot (give it nlohmann to_json/from_json; see strand/serialize.hpp)");
    }
  }

  template <class R, class Body>
  Handle<R> launch(Body body, bool stoppable) const {
    switch (target_) {
      case Target::pool: {
        ThreadPool& pool = config_->pool != nullptr ? *config_->pool : default_pool();
        return pool.submit_body<R>(std::move(body), stoppable);
      }
      case Target::thread: {
        auto state = detail::StateRef<detail::State<R>>::adopt(
            detail::make_state<detail::PlainState<R>>(Status::queued));
        if (stoppable) state->enable_stop();
        // A thread of its own (reused once an earlier call's returned); the handle is the join.
        detail::run_on_own_thread([state, body = std::move(body)]() mutable noexcept {
          if (state->try_start()) body(*state, state->stop_token());
        });
        return Handle<R>(std::move(state));
      }
      case Target::sync:
      default: {
        auto state = detail::StateRef<detail::State<R>>::adopt(
            detail::make_state<detail::PlainState<R>>(Status::queued));
        if (stoppable) state->enable_stop();
        if (state->try_start()) body(*state, state->stop_token());
        return Handle<R>(std::move(state));
      }
    }
  }

  std::shared_ptr<const config_type> config_;
  Target target_;
};

// Runs the function in the calling thread; the handle it returns is already finished.
template <class F, class... Parts>
class Taskrunner : public Runner<F, Parts...> {
 public:
  explicit Taskrunner(F f, Parts... parts)
      : Runner<F, Parts...>(Target::sync, std::move(f), std::move(parts)...) {}
};
template <class F, class... Parts>
Taskrunner(F, Parts...) -> Taskrunner<F, Parts...>;

// Runs each call in a new thread.
template <class F, class... Parts>
class ThreadTaskrunner : public Runner<F, Parts...> {
 public:
  explicit ThreadTaskrunner(F f, Parts... parts)
      : Runner<F, Parts...>(Target::thread, std::move(f), std::move(parts)...) {}
};
template <class F, class... Parts>
ThreadTaskrunner(F, Parts...) -> ThreadTaskrunner<F, Parts...>;

// Runs each call on a ThreadPool (strand::default_pool() unless given strand::use_pool(p)).
template <class F, class... Parts>
class PoolTaskrunner : public Runner<F, Parts...> {
 public:
  explicit PoolTaskrunner(F f, Parts... parts)
      : Runner<F, Parts...>(Target::pool, std::move(f), std::move(parts)...) {}
};
template <class F, class... Parts>
PoolTaskrunner(F, Parts...) -> PoolTaskrunner<F, Parts...>;

// Runs each call in a forked child process (see strand/process.hpp); takes ProcessOptions too.
template <class F, class... Parts>
class ProcessTaskrunner : public Runner<F, Parts...> {
 public:
  explicit ProcessTaskrunner(F f, Parts... parts)
      : Runner<F, Parts...>(Target::process, std::move(f), std::move(parts)...) {}

  template <class... Args>
  auto operator()(Args&&... args) const {
    using config = typename Runner<F, Parts...>::config_type;
    using call = detail::process_call<config, std::decay_t<Args>...>;
    static_assert(call::serializable,
                  "strand: a process task's result (or, with on_iter, each element) must cross a "
                  "process boundary: give the type nlohmann to_json/from_json functions (or "
                  "NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE), see strand/serialize.hpp");
    return Runner<F, Parts...>::operator()(std::forward<Args>(args)...);
  }
};
template <class F, class... Parts>
ProcessTaskrunner(F, Parts...) -> ProcessTaskrunner<F, Parts...>;

// Runs each call as a coroutine on an EventLoop: the caller's loop when called from a coroutine,
// otherwise strand::default_loop(). A plain function runs inside the loop; one returning Coro<X>
// is awaited there. With on_iter, the loop runs other coroutines between elements unless
// strand::yield_on_iter(false) is given. runner.awaitable(args...) hands back the Coro instead.
template <class F, class... Parts>
class CoroutineTaskrunner : public Runner<F, Parts...> {
 public:
  explicit CoroutineTaskrunner(F f, Parts... parts)
      : Runner<F, Parts...>(Target::coroutine, std::move(f), std::move(parts)...) {}
};
template <class F, class... Parts>
CoroutineTaskrunner(F, Parts...) -> CoroutineTaskrunner<F, Parts...>;

template <class T>
concept not_a_target = !std::is_convertible_v<const T&, std::string_view> && !requires {
  std::remove_cvref_t<T>::value;
};

// as_task(f, parts...): a thread runner (the seed's default target).
template <class F, class... Parts>
requires not_a_target<F>
[[nodiscard]] auto as_task(F f, Parts... parts) {
  return Runner<F, Parts...>(Target::thread, std::move(f), std::move(parts)...);
}

// as_task(strand::pool, f, parts...): the target named by a tag.
template <Target T, class F, class... Parts>
[[nodiscard]] auto as_task(TargetTag<T>, F f, Parts... parts) {
  if constexpr (T == Target::process) {
    return ProcessTaskrunner<F, Parts...>(std::move(f), std::move(parts)...);
  } else {
    return Runner<F, Parts...>(T, std::move(f), std::move(parts)...);
  }
}

// as_task("pool", f, parts...): the target named by a string; std::invalid_argument listing the
// valid names if it is unknown.
template <class F, class... Parts>
[[nodiscard]] auto as_task(std::string_view target, F f, Parts... parts) {
  return Runner<F, Parts...>(parse_target(target), std::move(f), std::move(parts)...);
}

}  // namespace strand
