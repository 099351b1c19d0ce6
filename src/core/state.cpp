#include "strand/detail/state.hpp"

#include "cpu_relax.hpp"
#include "strand/detail/futex.hpp"

namespace strand::detail {
namespace {

// Marks a continuation list as closed: the state finished, add_continuation runs at once.
class ClosedMarker final : public Continuation {
 public:
  void run(StateBase& /*finished*/) noexcept override {}
};
ClosedMarker closed_marker;
Continuation* closed() noexcept {
  return &closed_marker;
}

// A waiter spins this many rounds before it sleeps: a task that ends within a microsecond or two is
// then collected without a system call.
constexpr int kSpinBeforeSleep = 64;

}  // namespace

StateBase::~StateBase() {
  // Only a state that never finished still owns continuations: they never run.
  Continuation* c = continuations_.load(std::memory_order_acquire);
  if (c == closed()) return;
  while (c != nullptr) {
    Continuation* next = c->next;
    delete c;
    c = next;
  }
}

void StateBase::wait() const noexcept {
  if (ready()) return;
  if (help_until(*this, std::nullopt)) return;
  for (int i = 0; i < kSpinBeforeSleep; ++i) {
    if (ready()) return;
    cpu_relax();
  }
  std::uint32_t w = word_.load(std::memory_order_acquire);
  while (!is_terminal(static_cast<Status>(w & kStatusMask))) {
    if ((w & kWaiters) == 0) {
      if (!word_.compare_exchange_weak(w, w | kWaiters, std::memory_order_acq_rel,
                                       std::memory_order_acquire)) {
        continue;
      }
      w |= kWaiters;
    }
    futex_wait(word_, w);
    w = word_.load(std::memory_order_acquire);
  }
}

bool StateBase::wait_until(std::chrono::steady_clock::time_point deadline) const noexcept {
  if (ready()) return true;
  if (help_until(*this, deadline)) return ready();
  std::uint32_t w = word_.load(std::memory_order_acquire);
  while (!is_terminal(static_cast<Status>(w & kStatusMask))) {
    if ((w & kWaiters) == 0) {
      if (!word_.compare_exchange_weak(w, w | kWaiters, std::memory_order_acq_rel,
                                       std::memory_order_acquire)) {
        continue;
      }
      w |= kWaiters;
    }
    if (!futex_wait_until(word_, w, deadline)) return ready();
    w = word_.load(std::memory_order_acquire);
  }
  return true;
}

bool StateBase::cancel() noexcept {
  std::uint32_t w = word_.load(std::memory_order_acquire);
  for (;;) {
    const auto s = static_cast<Status>(w & kStatusMask);
    if (s == Status::cancelled) return true;
    if (s == Status::completed || s == Status::failed) return false;
    const std::uint32_t next = static_cast<std::uint32_t>(Status::cancelled) | (w & kClaimed);
    if (word_.compare_exchange_weak(w, next, std::memory_order_acq_rel,
                                    std::memory_order_acquire)) {
      break;
    }
  }
  stop_.request_stop();  // a running function that takes a std::stop_token sees it now
  finish(w);
  return true;
}

bool StateBase::try_start() noexcept {
  std::uint32_t w = word_.load(std::memory_order_acquire);
  for (;;) {
    const auto s = static_cast<Status>(w & kStatusMask);
    if (s != Status::pending && s != Status::queued) return false;
    const std::uint32_t next = (w & ~kStatusMask) | static_cast<std::uint32_t>(Status::running);
    if (word_.compare_exchange_weak(w, next, std::memory_order_acq_rel,
                                    std::memory_order_acquire)) {
      return true;
    }
  }
}

bool StateBase::publish(Status terminal) noexcept {
  std::uint32_t w = word_.load(std::memory_order_acquire);
  for (;;) {
    if (is_terminal(static_cast<Status>(w & kStatusMask))) return false;
    // kClaimed stays: a second Promise::set_value must still see that the first one happened.
    const std::uint32_t next = static_cast<std::uint32_t>(terminal) | (w & kClaimed);
    if (word_.compare_exchange_weak(w, next, std::memory_order_acq_rel,
                                    std::memory_order_acquire)) {
      break;
    }
  }
  finish(w);
  return true;
}

void StateBase::finish(std::uint32_t old_word) noexcept {
  if ((old_word & kWaiters) != 0) futex_wake_all(word_);
  if ((old_word & kHelpers) != 0) notify_helpers();
  Continuation* list = continuations_.exchange(closed(), std::memory_order_acq_rel);
  Continuation* in_order = nullptr;  // the list is a stack: reverse it to run in the order added
  while (list != nullptr) {
    Continuation* next = list->next;
    list->next = in_order;
    in_order = list;
    list = next;
  }
  while (in_order != nullptr) {
    Continuation* next = in_order->next;
    in_order->run(*this);
    delete in_order;
    in_order = next;
  }
}

void StateBase::add_continuation(std::unique_ptr<Continuation> c) noexcept {
  Continuation* head = continuations_.load(std::memory_order_acquire);
  for (;;) {
    if (head == closed()) {
      c->run(*this);
      return;
    }
    c->next = head;
    if (continuations_.compare_exchange_weak(head, c.get(), std::memory_order_acq_rel,
                                             std::memory_order_acquire)) {
      c.release();  // the list owns it now
      return;
    }
  }
}

bool StateBase::arm_helper_wake() const noexcept {
  std::uint32_t w = word_.load(std::memory_order_acquire);
  for (;;) {
    if (is_terminal(static_cast<Status>(w & kStatusMask))) return false;
    if ((w & kHelpers) != 0) return true;
    if (word_.compare_exchange_weak(w, w | kHelpers, std::memory_order_acq_rel,
                                    std::memory_order_acquire)) {
      return true;
    }
  }
}

void StateBase::rethrow() const {
  if (status() == Status::cancelled) throw Cancelled();
  std::rethrow_exception(error_);
}

std::exception_ptr StateBase::exception() const noexcept {
  switch (status()) {
    case Status::failed:
      return error_;
    case Status::cancelled:
      return std::make_exception_ptr(Cancelled());
    default:
      return nullptr;
  }
}

}  // namespace strand::detail
