#include "asymmetric_barrier.hpp"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <mutex>

namespace strand::detail {
namespace {

long membarrier(int command) noexcept {
  return ::syscall(__NR_membarrier, command, 0, 0);
}

}  // namespace

void enable_light_pushes() noexcept {
  static std::once_flag once;
  std::call_once(once, [] {
    const long supported = membarrier(MEMBARRIER_CMD_QUERY);
    if (supported < 0 || (supported & MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return;
    if (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) != 0) return;
    barrier_state::light.store(true, std::memory_order_seq_cst);
  });
}

void heavy_barrier() noexcept {
  if (!light_pushes()) return;  // pushes store with seq_cst: the sleeper's seq_cst ops suffice
  if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return;
  // The registration is per process image; should it be missing (it is kept across fork), register
  // again, and as a last resort use the global barrier, which needs none.
  if (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0 &&
      membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) {
    return;
  }
  (void)membarrier(MEMBARRIER_CMD_GLOBAL);
}

}  // namespace strand::detail
