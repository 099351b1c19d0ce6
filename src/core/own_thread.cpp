#include "strand/detail/own_thread.hpp"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

#include "fork_hooks.hpp"

namespace strand::detail {
namespace {

// How long a thread whose call returned waits for another before it ends: long enough that a
// program launching calls in a loop reuses its threads, short enough that a burst leaves no crowd.
constexpr std::chrono::seconds kIdleLifetime{5};

// A thread waiting for its next call, on its own stack.
struct IdleThread {
  std::condition_variable wake;
  std::unique_ptr<ThreadCall> call;  // handed over under the cache's mutex
};

struct ThreadCache {
  std::mutex mutex;
  std::vector<IdleThread*> idle;  // the most recently idle last: it is the warmest to reuse
};

ThreadCache& cache() noexcept {
  // Never destroyed: idle threads still wait on it while the program's statics are destroyed.
  static auto* c = new ThreadCache;
  return *c;
}

void thread_main(std::unique_ptr<ThreadCall> call) {
  IdleThread self;
  auto& c = cache();
  for (;;) {
    call->run();
    call.reset();  // what the call captured goes before this thread waits
    std::unique_lock lock(c.mutex);
    c.idle.push_back(&self);
    if (!self.wake.wait_for(lock, kIdleLifetime, [&] { return self.call != nullptr; })) {
      std::erase(c.idle, &self);
      return;
    }
    call = std::move(self.call);
  }
}

}  // namespace

void run_on_own_thread(std::unique_ptr<ThreadCall> call) {
  install_fork_handlers();
  auto& c = cache();
  {
    std::unique_lock lock(c.mutex);
    if (!c.idle.empty()) {
      IdleThread* thread = c.idle.back();
      c.idle.pop_back();
      thread->call = std::move(call);
      thread->wake.notify_one();  // under the lock: the thread's stack lives until it wakes
      return;
    }
  }
  std::thread(thread_main, std::move(call)).detach();
}

std::size_t idle_own_threads() noexcept {
  auto& c = cache();
  std::lock_guard lock(c.mutex);
  return c.idle.size();
}

void lock_thread_cache() noexcept {
  cache().mutex.lock();
}
void unlock_thread_cache() noexcept {
  cache().mutex.unlock();
}
void forget_thread_cache() noexcept {
  cache().idle.clear();  // those threads are not in the child
}

}  // namespace strand::detail
