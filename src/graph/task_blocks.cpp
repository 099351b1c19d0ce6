#include "task_blocks.hpp"

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <utility>

#include <pthread.h>
#include <sys/mman.h>

namespace strand::detail {
namespace {

// A slab's first cache line is its header; its blocks follow.
struct Slab {
  // Blocks not yet freed, counting those not yet handed out: it reaches zero once every block has
  // been handed out and freed, or the thread carving it has exited and the rest were freed.
  std::atomic<std::uint32_t> unfreed{0};
  Slab* next_spare = nullptr;  // in a SpareSlabs list
};

constexpr std::size_t kHeader = TaskBlocks::kBlockAlign;
constexpr auto kBlocksPerSlab =
    static_cast<std::uint32_t>((TaskBlocks::kSlabSize - kHeader) / TaskBlocks::kBlockSize);
static_assert(sizeof(Slab) <= kHeader);
static_assert(kBlocksPerSlab >= 64, "a slab should hold many blocks");

// Slabs are carved from regions mapped for them alone: in the malloc heap, the slabs kept for reuse
// would change where everyone else's blocks land and when glibc trims the heap (a peer's graph in
// the same benchmark built three times slower beside them).
constexpr std::size_t kRegionSize = std::size_t{2} << 20;
constexpr std::size_t kMaxHotSlabs = TaskBlocks::kMaxSpareBytes / TaskBlocks::kSlabSize;

Slab* slab_of(void* block) noexcept {
  return reinterpret_cast<Slab*>(reinterpret_cast<std::uintptr_t>(block) &
                                 ~(std::uintptr_t{TaskBlocks::kSlabSize} - 1));
}

// Empty slabs, process-wide: up to kMaxHotSlabs kept in memory for reuse, the rest handed back to
// the kernel (MADV_DONTNEED) but kept mapped, to be reused before any new region is mapped. So
// memory stays bounded and address space never shrinks below its peak.
class SpareSlabs {
 public:
  static Slab* take() {
    auto& s = state();
    std::lock_guard lock(s.mutex);
    if (s.hot != nullptr) {
      --s.hot_count;
      return std::exchange(s.hot, s.hot->next_spare);
    }
    if (s.cold != nullptr) return std::exchange(s.cold, s.cold->next_spare);
    if (s.carve == s.carve_end) map_region(s);
    void* memory = s.carve;
    s.carve += TaskBlocks::kSlabSize;
    return ::new (memory) Slab;
  }

  static void give_back(Slab* slab) noexcept {
    auto& s = state();
    {
      std::lock_guard lock(s.mutex);
      if (s.hot_count < kMaxHotSlabs) {
        ++s.hot_count;
        slab->next_spare = std::exchange(s.hot, slab);
        return;
      }
    }
    // Outside the lock: a system call. Writing the list link afterwards faults one page back in.
    ::madvise(slab, TaskBlocks::kSlabSize, MADV_DONTNEED);
    std::lock_guard lock(s.mutex);
    slab->next_spare = std::exchange(s.cold, slab);
  }

 private:
  struct State {
    std::mutex mutex;
    Slab* hot = nullptr;
    std::size_t hot_count = 0;
    Slab* cold = nullptr;
    char* carve = nullptr;  // the unused rest of the last region mapped
    char* carve_end = nullptr;
  };
  static State& state() {
    // Never destroyed: a thread may free its last task while the program exits.
    static auto& s = []() -> State& {
      auto& made = *std::make_unique<State>().release();
      // A child forked while another thread holds the mutex would wait for it forever (a forked
      // computation may make tasks): fork takes it first, as glibc does for malloc's locks.
      ::pthread_atfork([] { state().mutex.lock(); }, [] { state().mutex.unlock(); },
                       [] { state().mutex.unlock(); });
      return made;
    }();
    return s;
  }

  // Maps kRegionSize bytes aligned to kSlabSize (so slab_of can find a slab by masking).
  static void map_region(State& s) {
    constexpr std::size_t kAlign = TaskBlocks::kSlabSize;
    const std::size_t length = kRegionSize + kAlign;
    void* mapped =
        ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mapped == MAP_FAILED) throw std::bad_alloc();
    const auto start = reinterpret_cast<std::uintptr_t>(mapped);
    const auto aligned = (start + kAlign - 1) & ~(std::uintptr_t{kAlign} - 1);
    const std::size_t head = aligned - start;
    if (head != 0) ::munmap(mapped, head);
    if (kAlign - head != 0) ::munmap(reinterpret_cast<void*>(aligned + kRegionSize), kAlign - head);
    s.carve = reinterpret_cast<char*>(aligned);
    s.carve_end = s.carve + kRegionSize;
  }
};

// Drops one thread's claim on `count` blocks of `slab`; the last claim returns the slab.
void release(Slab* slab, std::uint32_t count) noexcept {
  // acq_rel: whoever takes the count to zero sees every write to the slab's blocks before reuse.
  if (slab->unfreed.fetch_sub(count, std::memory_order_acq_rel) == count) {
    SpareSlabs::give_back(slab);
  }
}

// The slab this thread carves blocks from.
struct Carver {
  Slab* slab = nullptr;
  std::uint32_t next = kBlocksPerSlab;  // the next block to hand out; kBlocksPerSlab: none left

  Carver() = default;
  Carver(const Carver&) = delete;
  Carver& operator=(const Carver&) = delete;
  // A thread that exits gives up the blocks it never handed out.
  ~Carver() {
    if (slab != nullptr && next < kBlocksPerSlab) release(slab, kBlocksPerSlab - next);
  }
};

thread_local Carver carver;

}  // namespace

void* TaskBlocks::allocate() {
  Carver& c = carver;
  if (c.next == kBlocksPerSlab) {
    // The full slab is left to its blocks: the last one freed returns it.
    Slab* slab = SpareSlabs::take();
    slab->unfreed.store(kBlocksPerSlab, std::memory_order_relaxed);
    c.slab = slab;
    c.next = 0;
  }
  return reinterpret_cast<char*>(c.slab) + kHeader + std::size_t{c.next++} * kBlockSize;
}

void TaskBlocks::deallocate(void* block) noexcept {
  release(slab_of(block), 1);
}

}  // namespace strand::detail
