// Where Task::make puts its tasks (not installed; src/graph/ only): fixed-size blocks carved in
// address order from 64 KiB slabs, and slabs kept for reuse once every block in them is freed.
//
// Why not malloc: a graph of 100,000 tasks is 26 MB of small blocks. glibc hands most of that back
// to the kernel when the graph dies (it trims the top of its heap), so the next graph of that size
// takes a page fault per 4 KiB again, and malloc and free cost some 40 ns a task on top. That was
// most of the time to build a graph: Task::make took 7 ms of a 100,000-task layered graph's 11 ms
// build. Taskflow keeps its nodes in a pool for the same reason.
//
// Why slabs and not a free list: a free list hands blocks back in the order they were freed, so a
// graph built from it lies scattered in memory, and building and walking it missed the cache far
// more (a layered graph built 50% slower that way). Carving a slab gives tasks made one after
// another neighbouring addresses, as a fresh heap does.
//
// Any thread may free a block; the slab's count of blocks not yet freed is atomic. A slab whose
// count reaches zero goes to a process-wide list of spare slabs (a mutex, taken once per slab).
// At most kMaxSpareBytes of them stay in memory; the rest are handed back to the kernel
// (MADV_DONTNEED) but stay mapped, for reuse before any new region is mapped. A slab with one
// live task in it stays whole: the price of carving. Under AddressSanitizer tasks come from the
// heap instead, so that it still sees a use after free.
//
// A thread that exits gives up the rest of its slab (a thread_local's destructor); a task made by
// another thread_local's destructor after that one ran would be undefined behaviour.
#pragma once

#include <cstddef>
#include <memory>
#include <new>

namespace strand::detail {

class TaskBlocks {
 public:
  // A Task and its shared_ptr control block (240 + 16 bytes); a multiple of the cache line, so
  // that Task's fields can be laid out by line (task.hpp).
  static constexpr std::size_t kBlockSize = 256;
  static constexpr std::size_t kBlockAlign = 64;
  static constexpr std::size_t kSlabSize = std::size_t{64} << 10;
  static constexpr std::size_t kMaxSpareBytes = std::size_t{64} << 20;

  // A block of kBlockSize bytes, aligned to kBlockAlign; throws std::bad_alloc.
  static void* allocate();
  // Gives back a block from allocate(), from any thread.
  static void deallocate(void* block) noexcept;
};

// allocate_shared's allocator for tasks: the control block and the task share one block.
template <class T>
struct TaskBlockAllocator {
  using value_type = T;

  TaskBlockAllocator() = default;
  template <class U>
  explicit(false) TaskBlockAllocator(const TaskBlockAllocator<U>& /*other*/) noexcept {}

  static constexpr bool kFits =
      sizeof(T) <= TaskBlocks::kBlockSize && alignof(T) <= TaskBlocks::kBlockAlign;

  T* allocate(std::size_t n) {
#if !defined(__SANITIZE_ADDRESS__)
    if (kFits && n == 1) return static_cast<T*>(TaskBlocks::allocate());
#endif
    return std::allocator<T>().allocate(n);
  }
  void deallocate(T* p, std::size_t n) noexcept {
#if !defined(__SANITIZE_ADDRESS__)
    if (kFits && n == 1) {
      TaskBlocks::deallocate(p);
      return;
    }
#endif
    std::allocator<T>().deallocate(p, n);
  }

  template <class U>
  bool operator==(const TaskBlockAllocator<U>& /*other*/) const noexcept {
    return true;
  }
};

}  // namespace strand::detail
