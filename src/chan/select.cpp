#include "strand/select.hpp"

#include <numeric>
#include <random>
#include <string>
#include <thread>

namespace strand {
namespace detail {
namespace {

// A waiter that claimed itself: something changed while it was queuing; look again.
constexpr int kRetry = -4;

std::minstd_rand& thread_random() noexcept {
  thread_local std::minstd_rand engine(static_cast<unsigned>(
      std::hash<std::thread::id>{}(std::this_thread::get_id()) ^
      static_cast<std::size_t>(std::chrono::steady_clock::now().time_since_epoch().count())));
  return engine;
}

}  // namespace

void throw_empty_select(const char* what) {
  throw std::invalid_argument(std::string("strand: ") + what +
                              " needs at least one channel (it would wait forever)");
}

void random_order(std::span<std::size_t> order) noexcept {
  auto& engine = thread_random();
  for (std::size_t i = order.size(); i > 1; --i) {
    const std::size_t j = engine() % i;
    std::swap(order[i - 1], order[j]);
  }
}

std::size_t wait_ready(std::span<ReadySource> sources, bool closed_is_ready) {
  if (sources.empty()) throw_empty_select("select");
  std::vector<std::size_t> order(sources.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::vector<WaitEntry> entries(sources.size());
  for (;;) {
    std::sort(order.begin(), order.end());
    random_order(order);
    bool all_finished = true;  // every source closed and drained
    for (std::size_t i : order) {
      ReadySource& s = sources[i];
      bool has, closed;
      {
        std::lock_guard lock(*s.lock);
        has = s.has_value(s.keep.get());
        closed = s.closed(s.keep.get());
      }
      if (has || (closed && closed_is_ready)) return i;
      all_finished = all_finished && closed;
    }
    if (all_finished) return kNone;

    // Nothing ready: watch every source that can still become ready, then sleep.
    Waiter waiter;
    std::size_t registered = 0;
    bool retry = false;
    bool watching = false;
    for (std::size_t k = 0; k < order.size(); ++k) {
      ReadySource& s = sources[order[k]];
      std::lock_guard lock(*s.lock);
      s.enter_slow(s.keep.get());
      const bool has = s.has_value(s.keep.get());
      const bool closed = s.closed(s.keep.get());
      if (has || (closed && closed_is_ready)) {
        s.settle(s.keep.get());
        retry = waiter.try_select(kRetry);
        break;
      }
      entries[k] = WaitEntry{&waiter, nullptr, static_cast<int>(order[k])};
      if (!closed) {  // a closed, drained source never becomes ready: not watched
        s.watchers->push(&entries[k]);
        watching = true;
      }
      registered = k + 1;
    }
    // Watching nothing: every open source closed meanwhile; look again (and finish).
    if (!retry && watching) waiter.wait();
    for (std::size_t k = 0; k < registered; ++k) {
      ReadySource& s = sources[order[k]];
      std::lock_guard lock(*s.lock);
      s.watchers->remove(&entries[k]);
      s.settle(s.keep.get());
    }
  }
}

}  // namespace detail

void Select::check_no_fallback(const char* what) const {
  if (fallback_index_ != detail::kNone) {
    throw std::invalid_argument(std::string("strand: Select::") + what +
                                ": this Select already has a default or a timeout case");
  }
}

std::size_t Select::wait() {
  // Scratch space kept between waits: a select in a loop allocates nothing.
  std::vector<std::size_t>& order = order_;
  order.clear();
  for (std::size_t i = 0; i < cases_.size(); ++i) {
    if (cases_[i]) order.push_back(i);
  }
  if (order.empty() && fallback_index_ == detail::kNone) {
    detail::throw_empty_select("Select::wait");
  }
  for (std::size_t i : order) cases_[i]->prepare();
  std::optional<std::chrono::steady_clock::time_point> deadline;
  if (timeout_) deadline = std::chrono::steady_clock::now() + *timeout_;
  std::vector<detail::WaitEntry>& entries = entries_;
  entries.resize(order.size());

  for (;;) {
    // Every case that can proceed now, tried in a random order: a uniform choice among them.
    detail::random_order(order);
    for (std::size_t i : order) {
      if (cases_[i]->try_now()) {
        cases_[i]->run_handler();
        return i;
      }
    }
    if (fallback_index_ != detail::kNone && !timeout_) {
      default_();
      return fallback_index_;
    }
    if (order.empty()) {  // only a timeout case: wait it out
      std::this_thread::sleep_until(*deadline);
      default_();
      return fallback_index_;
    }

    // Queue a waiter on every channel; the first channel to claim it performs that case.
    detail::Waiter waiter;
    std::size_t registered = 0;
    bool retry = false;
    for (std::size_t k = 0; k < order.size(); ++k) {
      Case& c = *cases_[order[k]];
      std::lock_guard lock(*c.lock_ref());
      if (c.ready_locked()) {
        c.settle_locked();
        retry = waiter.try_select(detail::kRetry);
        break;
      }
      entries[k] = detail::WaitEntry{&waiter, c.slot(), static_cast<int>(order[k])};
      c.enqueue_locked(entries[k]);
      registered = k + 1;
    }
    const int outcome = retry ? detail::kRetry : waiter.wait(deadline);
    bool destroyed = false;
    for (std::size_t k = 0; k < registered; ++k) {
      Case& c = *cases_[order[k]];
      std::lock_guard lock(*c.lock_ref());
      c.dequeue_locked(entries[k]);
      destroyed = destroyed || c.destroyed_locked();
    }
    if (outcome == detail::kRetry) continue;
    if (outcome == detail::Waiter::kAborted) {
      default_();
      return fallback_index_;
    }
    if (outcome == detail::Waiter::kClosed) {
      throw destroyed ? ChannelClosed::destroyed() : ChannelClosed();
    }
    const auto fired = static_cast<std::size_t>(outcome);
    cases_[fired]->run_handler();
    return fired;
  }
}

}  // namespace strand
