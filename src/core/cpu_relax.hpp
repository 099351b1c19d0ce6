// A hint to the CPU that we are in a spin loop (frees the pipeline for the sibling hyperthread).
#pragma once

namespace strand::detail {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace strand::detail
