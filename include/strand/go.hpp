// strand/go.hpp — go(f): run f concurrently and talk to it over a two-way channel (spool).
//
//   void fibonacci(strand::Endpoint<long, int>& self, int n) { self.put(fib(n)); }
//
//   auto spool = strand::go(fibonacci, 10);   // f runs in a thread of its own
//   spool.get();                              // std::optional<long>: what the task put
//   spool.put(3);                             // what the task's self.get() receives
//   spool.alive();                            // the task is running and the channel open
//   spool.close();                            // both directions; the task's next put throws
//
//   auto fib_task = strand::go_factory(fibonacci);  // spool's @coroutine: a factory of tasks
//   auto a = fib_task(10), b = fib_task(20);        // each call: a new task, its own channel
//
// `f` takes its side of the link first: Endpoint<Out, In>& (it puts Out, gets In); go returns the
// other side, Endpoint<In, Out>. Both directions are unbuffered unless go(strand::buffered(n), ...)
// says otherwise. When the task returns (or throws), both directions close: the caller drains what
// was put, then get() returns an empty optional. A ChannelClosed escaping the task (the caller
// closed) ends it quietly; any other exception fails handle(), the task's strand::Handle<void>.
// Destroying the caller's endpoint closes the link, so an abandoned task does not block forever.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <exception>
#include <memory>
#include <optional>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>

#include "strand/channel.hpp"
#include "strand/handle.hpp"
#include "strand/promise.hpp"

namespace strand {

namespace detail {
template <class A, class B>
struct Link {
  explicit Link(std::ptrdiff_t capacity) : forward(capacity), backward(capacity) {}
  Channel<A> forward;   // from the task to the caller
  Channel<B> backward;  // from the caller to the task
  std::atomic<bool> running{true};
};
}  // namespace detail

// One side of a go() link: puts Out, gets In. Move-only.
template <class Out, class In = Out>
class Endpoint {
 public:
  using out_type = Out;
  using in_type = In;

  Endpoint(Endpoint&&) noexcept = default;
  Endpoint& operator=(Endpoint&& other) noexcept {
    if (this != &other) {
      release();
      link_ = std::move(other.link_);
      out_ = other.out_;
      in_ = other.in_;
      running_ = other.running_;
      owner_ = other.owner_;
      handle_ = std::move(other.handle_);
    }
    return *this;
  }
  Endpoint(const Endpoint&) = delete;
  Endpoint& operator=(const Endpoint&) = delete;
  // The caller's side closes the link: the task sees ChannelClosed on its next put.
  ~Endpoint() { release(); }

  void put(Out v) { out_->put(std::move(v)); }
  std::optional<In> get() { return in_->get(); }
  bool try_put(Out v) { return out_->try_put(std::move(v)); }
  std::optional<In> try_get() { return in_->try_get(); }
  template <class Rep, class Period>
  bool put_for(Out v, std::chrono::duration<Rep, Period> timeout) {
    return out_->put_for(std::move(v), timeout);
  }
  template <class Rep, class Period>
  std::optional<In> get_for(std::chrono::duration<Rep, Period> timeout) {
    return in_->get_for(timeout);
  }
  // Closes both directions.
  void close() noexcept {
    out_->close();
    in_->close();
  }
  // The task is still running and the link open.
  [[nodiscard]] bool alive() const noexcept {
    return running_->load(std::memory_order_acquire) && out_->alive() && in_->alive();
  }
  // Coroutines: `co_await spool.recv()`, `co_await spool.send(v)`.
  [[nodiscard]] auto recv() noexcept { return in_->recv(); }
  [[nodiscard]] auto send(Out v) noexcept { return out_->send(std::move(v)); }
  // Reads until the link is closed and drained.
  auto begin() { return in_->begin(); }
  auto end() noexcept { return in_->end(); }

  [[nodiscard]] Channel<Out>& outbound() noexcept { return *out_; }
  [[nodiscard]] Channel<In>& inbound() noexcept { return *in_; }
  // The task's handle (on the caller's side): completed when it returns, failed if it threw.
  [[nodiscard]] const Handle<void>& handle() const noexcept { return handle_; }

  // For strand's own layers (go): one side of a link, the task's end of it finishing.
  Endpoint(std::shared_ptr<void> link, Channel<Out>* out, Channel<In>* in,
           std::atomic<bool>* running, bool owner)
      : link_(std::move(link)), out_(out), in_(in), running_(running), owner_(owner) {}
  void attach(Handle<void> handle) noexcept { handle_ = std::move(handle); }
  void finish() noexcept {
    running_->store(false, std::memory_order_release);
    close();
  }

 private:
  void release() noexcept {
    if (link_ && owner_) close();
    link_.reset();
  }

  std::shared_ptr<void> link_;
  Channel<Out>* out_ = nullptr;
  Channel<In>* in_ = nullptr;
  std::atomic<bool>* running_ = nullptr;
  bool owner_ = false;  // the caller's side: closes the link when destroyed
  Handle<void> handle_;
};

template <class A, class B>
std::pair<Endpoint<A, B>, Endpoint<B, A>> make_link(std::ptrdiff_t capacity) {
  auto link = std::make_shared<detail::Link<A, B>>(capacity);
  auto* l = link.get();
  Endpoint<A, B> task(link, &l->forward, &l->backward, &l->running, false);
  Endpoint<B, A> caller(std::move(link), &l->backward, &l->forward, &l->running, true);
  return {std::move(task), std::move(caller)};
}

// go(strand::buffered(n), f, ...): both directions of the link queue up to n values.
struct Buffered {
  std::ptrdiff_t capacity;
};
[[nodiscard]] inline Buffered buffered(std::ptrdiff_t capacity) noexcept {
  return {capacity};
}

namespace detail {
template <class T>
struct endpoint_traits : std::false_type {};
template <class Out, class In>
struct endpoint_traits<Endpoint<Out, In>&> : std::true_type {
  using out = Out;
  using in = In;
};

// The first parameter of F's call operator (or of a function pointer).
template <class F>
struct first_param : first_param<decltype(&F::operator())> {};
template <class R, class P, class... A>
struct first_param<R (*)(P, A...)> {
  using type = P;
};
template <class R, class P, class... A>
struct first_param<R(P, A...)> {
  using type = P;
};
template <class C, class R, class P, class... A>
struct first_param<R (C::*)(P, A...) const> {
  using type = P;
};
template <class C, class R, class P, class... A>
struct first_param<R (C::*)(P, A...)> {
  using type = P;
};
}  // namespace detail

template <class F, class... Args>
auto go_with(std::ptrdiff_t capacity, F f, Args... args) {
  using Self = typename detail::first_param<std::remove_pointer_t<F>>::type;
  static_assert(detail::endpoint_traits<Self>::value,
                "strand::go: the function's first parameter must be its endpoint, "
                "strand::Endpoint<Out, In>& (it puts Out and gets In)");
  using Out = typename detail::endpoint_traits<Self>::out;
  using In = typename detail::endpoint_traits<Self>::in;
  auto [task_side, caller_side] = make_link<Out, In>(capacity);
  Promise<void> promise(Status::queued);
  caller_side.attach(promise.handle());
  std::thread([self = std::move(task_side), promise = std::move(promise), f = std::move(f),
               ... a = std::move(args)]() mutable {
    promise.set_running();
    try {
      f(self, a...);
      promise.set_value();
    } catch (const ChannelClosed&) {
      promise.set_value();  // the caller closed the link: the task's way of being told to stop
    } catch (...) {
      promise.set_exception(std::current_exception());
    }
    self.finish();
  }).detach();  // the handle is the join
  return std::move(caller_side);
}

// Runs f(endpoint, args...) in a thread of its own; returns the caller's endpoint.
template <class F, class... Args>
auto go(F f, Args... args) {
  return go_with(0, std::move(f), std::move(args)...);
}
template <class F, class... Args>
auto go(Buffered buffer, F f, Args... args) {
  return go_with(buffer.capacity, std::move(f), std::move(args)...);
}

// Spool's @coroutine decorator: a callable that starts a new task (with its own link) per call.
template <class F>
class GoFactory {
 public:
  explicit GoFactory(F f, std::ptrdiff_t capacity = 0) : f_(std::move(f)), capacity_(capacity) {}
  template <class... Args>
  auto operator()(Args... args) const {
    return go_with(capacity_, f_, std::move(args)...);
  }

 private:
  F f_;
  std::ptrdiff_t capacity_;
};

template <class F>
[[nodiscard]] GoFactory<F> go_factory(F f) {
  return GoFactory<F>(std::move(f));
}
template <class F>
[[nodiscard]] GoFactory<F> go_factory(Buffered buffer, F f) {
  return GoFactory<F>(std::move(f), buffer.capacity);
}

}  // namespace strand
