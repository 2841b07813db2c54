#pragma once

/// @file atomic.hpp
/// @brief Small helpers shared by the lock-free building blocks.

#include <cstddef>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace offload::detail {

/// Size used to keep independently written atomics on separate cache lines. 64 on the targets we
/// build for; std::hardware_destructive_interference_size is avoided because GCC warns that its
/// value may differ between translation units.
inline constexpr std::size_t k_cache_line = 64;

/// One busy-wait step: tells the CPU we are spinning (PAUSE on x86), costs no syscall.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#else
  std::this_thread::yield();
#endif
}

/// Pauses in one search round of a spinning worker (worker_loop's spin, help_until's idle
/// rounds): long enough that a round does not hammer the queues, short against a task's wait.
inline constexpr int k_pauses_per_round = 32;

/// k_pauses_per_round cpu_relax() steps.
inline void cpu_relax_round() noexcept {
  for (int k = 0; k < k_pauses_per_round; ++k) cpu_relax();
}

}  // namespace offload::detail
