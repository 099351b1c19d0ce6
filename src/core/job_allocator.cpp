// Memory for pool jobs. The common pattern (one thread submits, workers run and free) makes glibc
// take its slow path on both sides: the submitter's per-thread cache is always empty and the
// workers' always full. Here each thread keeps free lists per size class; a block freed by another
// thread goes back to the thread that allocated it, in batches, through one lock-free stack.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <new>

#include "fork_hooks.hpp"
#include "strand/detail/job.hpp"

namespace strand::detail {
namespace {

constexpr std::size_t kGranule = 64;
constexpr std::uint32_t kClasses = 4;  // blocks of 64, 128, 192 and 256 bytes
constexpr std::uint32_t kLarge = kClasses;
constexpr std::uint32_t kMaxCached = 4096;  // blocks per class kept on a local list
constexpr std::uint32_t kBatch = 64;        // remote frees handed back at once

struct Cache;

// In front of every job. While a block is free, `next` overlays `owner`; `size_class` survives.
struct Header {
  union {
    Cache* owner;
    Header* next;
  };
  std::uint32_t size_class;
};
constexpr std::size_t kHeader = 16;
static_assert(sizeof(Header) <= kHeader);

struct Cache {
  Header* local[kClasses] = {};
  std::uint32_t cached[kClasses] = {};
  alignas(64) std::atomic<Header*> remote{nullptr};  // freed for us by other threads
  Cache* next_orphan = nullptr;
};

// Caches are never freed (other threads may still hand blocks back to one): a thread that ends
// leaves its cache here for the next thread to adopt.
struct Orphans {
  std::mutex mutex;
  Cache* head = nullptr;
};
Orphans& orphans() {
  static Orphans* o = new Orphans;  // never destroyed: threads may end during static destruction
  return *o;
}

}  // namespace

void lock_job_orphans() noexcept {
  orphans().mutex.lock();
}
void unlock_job_orphans() noexcept {
  orphans().mutex.unlock();
}

namespace {

// Blocks this thread freed for another thread, waiting to go back in one push.
struct Pending {
  Cache* owner = nullptr;
  Header* head = nullptr;
  Header* tail = nullptr;
  std::uint32_t count = 0;

  void flush() noexcept {
    if (head == nullptr) return;
    Header* top = owner->remote.load(std::memory_order_relaxed);
    do {
      tail->next = top;
    } while (!owner->remote.compare_exchange_weak(top, head, std::memory_order_release,
                                                  std::memory_order_relaxed));
    owner = nullptr;
    head = tail = nullptr;
    count = 0;
  }
};

thread_local Cache* this_cache = nullptr;
thread_local Pending this_pending;
thread_local bool thread_ending = false;

// Gives the cache to the orphans when the thread ends.
struct CacheReturn {
  ~CacheReturn() {
    thread_ending = true;
    this_pending.flush();
    if (this_cache == nullptr) return;
    auto& o = orphans();
    std::lock_guard lock(o.mutex);
    this_cache->next_orphan = o.head;
    o.head = this_cache;
    this_cache = nullptr;
  }
};
thread_local CacheReturn cache_return;

// Touching the thread_local registers its destructor, so the thread hands back what it holds.
void hand_back_at_thread_exit() noexcept {
  (void)&cache_return;
}

Cache* cache() noexcept {
  if (this_cache != nullptr || thread_ending) return this_cache;
  hand_back_at_thread_exit();
  {
    auto& o = orphans();
    std::lock_guard lock(o.mutex);
    if (o.head != nullptr) {
      this_cache = o.head;
      o.head = o.head->next_orphan;
    }
  }
  if (this_cache == nullptr) this_cache = new (std::nothrow) Cache;
  return this_cache;
}

void release_block(Header* h) noexcept {
  ::operator delete(h);
}

// Moves what other threads handed back onto the local lists.
void collect(Cache& c) noexcept {
  Header* h = c.remote.exchange(nullptr, std::memory_order_acquire);
  while (h != nullptr) {
    Header* next = h->next;
    const std::uint32_t k = h->size_class;
    if (c.cached[k] < kMaxCached) {
      h->next = c.local[k];
      c.local[k] = h;
      ++c.cached[k];
    } else {
      release_block(h);
    }
    h = next;
  }
}

}  // namespace

void* allocate_job(std::size_t size) {
  const std::size_t total = size + kHeader;
  const std::uint32_t k = static_cast<std::uint32_t>((total - 1) / kGranule);
  Cache* c = k < kClasses ? cache() : nullptr;
  Header* h = nullptr;
  if (c != nullptr) {
    if (c->local[k] == nullptr) collect(*c);
    h = c->local[k];
    if (h != nullptr) {
      c->local[k] = h->next;
      --c->cached[k];
    }
  }
  if (h == nullptr) {
    h = static_cast<Header*>(::operator new(c != nullptr ? (k + 1) * kGranule : total));
  }
  h->owner = c;
  h->size_class = c != nullptr ? k : kLarge;
  return reinterpret_cast<std::byte*>(h) + kHeader;
}

void deallocate_job(void* p) noexcept {
  if (p == nullptr) return;
  auto* h = reinterpret_cast<Header*>(static_cast<std::byte*>(p) - kHeader);
  const std::uint32_t k = h->size_class;
  Cache* owner = h->owner;
  if (k == kLarge || owner == nullptr) {
    release_block(h);
    return;
  }
  if (owner == this_cache) {
    if (owner->cached[k] < kMaxCached) {
      h->next = owner->local[k];
      owner->local[k] = h;
      ++owner->cached[k];
    } else {
      release_block(h);
    }
    return;
  }
  Pending& pending = this_pending;
  if (thread_ending) {  // this thread's own state is going away: hand the block back alone
    Pending single{owner, h, h, 1};
    h->next = nullptr;
    single.flush();
    return;
  }
  if (pending.owner != owner) {
    pending.flush();
    hand_back_at_thread_exit();  // a thread that only frees must still flush its last batch
    pending.owner = owner;
  }
  h->next = pending.head;
  pending.head = h;
  if (pending.tail == nullptr) pending.tail = h;
  if (++pending.count >= kBatch) pending.flush();
}

void flush_job_frees() noexcept {
  this_pending.flush();
}

}  // namespace strand::detail
