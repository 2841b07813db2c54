#pragma once

/// @file tick_clock.hpp
/// @brief Cheap monotonic nanosecond timestamps for metrics (queue wait, run time, heartbeats).

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <x86intrin.h>
#define OFFLOAD_HAS_RDTSC 1
#else
#define OFFLOAD_HAS_RDTSC 0
#endif

namespace offload::detail {

#if OFFLOAD_HAS_RDTSC
__extension__ typedef unsigned __int128 uint128_t;  // GCC/Clang extension, for 64×64→128 scaling
#endif

/// Nanoseconds on one process-wide monotonic scale. On x86-64 Linux where the CPU has an invariant
/// TSC and the kernel itself keeps time with it (clocksource `tsc`, which the kernel picks only
/// after checking that the TSCs of all CPUs agree) it reads the TSC (about 9 ns here, against 28 ns
/// for steady_clock) scaled by a factor measured once per process against steady_clock over 2 ms;
/// elsewhere, including VMs on kvm-clock whose vCPU TSCs may be offset, it is steady_clock.
/// Readings on different cores may still differ by the residual TSC skew (tens of ns): callers
/// clamp negative differences to zero. Thread-safe.
class tick_clock {
 public:
  static std::uint64_t now_ns() noexcept {
#if OFFLOAD_HAS_RDTSC
    const calibration& c = calibrated();
    if (c.use_tsc) {
      const std::uint64_t ticks = __rdtsc() - c.base_ticks;
      return c.base_ns +
             static_cast<std::uint64_t>((static_cast<uint128_t>(ticks) * c.ns_per_tick_q32) >> 32);
    }
#endif
    return steady_ns();
  }

  /// True when now_ns() reads the TSC, false when it reads steady_clock (for diagnostics).
  static bool uses_tsc() noexcept {
#if OFFLOAD_HAS_RDTSC
    return calibrated().use_tsc;
#else
    return false;
#endif
  }

  /// Forces the one-time calibration now (an executor calls this at construction so that no task
  /// pays for it).
  static void warm_up() noexcept {
#if OFFLOAD_HAS_RDTSC
    (void)calibrated();
#endif
  }

 private:
  static std::uint64_t steady_ns() noexcept {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                          std::chrono::steady_clock::now().time_since_epoch())
                                          .count());
  }

#if OFFLOAD_HAS_RDTSC
  struct calibration {
    bool use_tsc = false;
    std::uint64_t base_ticks = 0;
    std::uint64_t base_ns = 0;
    std::uint64_t ns_per_tick_q32 = 0;  // nanoseconds per tick, fixed point with 32 fraction bits
  };

  static bool invariant_tsc() noexcept {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (__get_cpuid(0x80000000u, &eax, &ebx, &ecx, &edx) == 0 || eax < 0x80000007u)
      return false;
    __get_cpuid(0x80000007u, &eax, &ebx, &ecx, &edx);
    return (edx & (1u << 8)) != 0;  // CPUID.80000007H:EDX[8], invariant TSC
  }

  /// Whether the kernel's current clocksource is the TSC. An invariant TSC on each CPU is not
  /// enough: under a hypervisor the vCPUs' TSCs can be offset from each other by milliseconds, and
  /// a task that starts on one vCPU and ends on another would be timed wrong. The kernel checks
  /// synchronisation at boot and keeps watching it, and falls back to another clocksource
  /// (kvm-clock, hpet) when it fails; we follow its verdict.
  static bool kernel_keeps_time_with_tsc() noexcept {
    std::FILE* f =
        std::fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "r");
    if (f == nullptr)
      return false;
    char name[32] = {};
    const bool read = std::fgets(name, sizeof name, f) != nullptr;
    std::fclose(f);
    return read && std::strncmp(name, "tsc", 3) == 0 && (name[3] == '\n' || name[3] == '\0');
  }

  /// A steady_clock reading and the TSC at that moment: the TSC is read just before and just
  /// after, and of several tries the one with the two reads closest is kept, so that a thread
  /// preempted between the two clocks (tens of microseconds under load or a sanitizer) does not
  /// skew the scale.
  struct paired_reading {
    std::uint64_t ticks;
    std::uint64_t ns;
  };
  static paired_reading read_both() noexcept {
    paired_reading best{0, 0};
    std::uint64_t best_gap = ~std::uint64_t{0};
    for (int i = 0; i < 16; ++i) {
      const std::uint64_t before = __rdtsc();
      const std::uint64_t ns = steady_ns();
      const std::uint64_t after = __rdtsc();
      if (after >= before && after - before < best_gap) {
        best_gap = after - before;
        best = {before + (after - before) / 2, ns};
      }
    }
    return best;
  }

  static const calibration& calibrated() noexcept {
    static const calibration c = [] {
      calibration r;
      if (!invariant_tsc() || !kernel_keeps_time_with_tsc())
        return r;
      const paired_reading first = read_both();
      while (steady_ns() - first.ns < 2'000'000) {
      }
      const paired_reading last = read_both();
      if (last.ticks <= first.ticks || last.ns <= first.ns)
        return r;
      r.ns_per_tick_q32 = static_cast<std::uint64_t>(
          (static_cast<uint128_t>(last.ns - first.ns) << 32) / (last.ticks - first.ticks));
      r.base_ticks = last.ticks;
      r.base_ns = last.ns;
      r.use_tsc = r.ns_per_tick_q32 != 0;
      return r;
    }();
    return c;
  }
#endif
};

}  // namespace offload::detail
