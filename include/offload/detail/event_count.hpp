#pragma once

/// @file event_count.hpp
/// @brief Event count: lets threads sleep until "something may have changed" without lost
/// wake-ups and without a syscall on the notify side when nobody sleeps (after folly's EventCount
/// and Taskflow's notifier).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "offload/config.hpp"
#include "offload/detail/atomic.hpp"

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#endif

namespace offload::detail {

/// Blocks while `word == expected`, at most `timeout` (if positive); may wake spuriously.
inline void futex_wait(std::atomic<std::uint32_t>& word,
                       std::uint32_t expected,
                       std::chrono::nanoseconds timeout = std::chrono::nanoseconds::zero()) {
#if defined(__linux__)
  timespec ts{};
  timespec* tsp = nullptr;
  if (timeout.count() > 0) {
    ts.tv_sec = static_cast<time_t>(timeout.count() / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(timeout.count() % 1'000'000'000);
    tsp = &ts;
  }
  // std::atomic<uint32_t> has the size and alignment of uint32_t (checked below).
  syscall(SYS_futex,
          reinterpret_cast<std::uint32_t*>(&word),
          FUTEX_WAIT_PRIVATE,
          expected,
          tsp,
          nullptr,
          0);
#else
  if (timeout.count() > 0) {
    std::this_thread::sleep_for(std::min(timeout, std::chrono::nanoseconds(50'000)));
  } else {
    word.wait(expected, std::memory_order_relaxed);
  }
#endif
}

/// Wakes up to `count` threads blocked in futex_wait on `word`.
inline void futex_wake(std::atomic<std::uint32_t>& word, int count) {
#if defined(__linux__)
  syscall(SYS_futex,
          reinterpret_cast<std::uint32_t*>(&word),
          FUTEX_WAKE_PRIVATE,
          count,
          nullptr,
          nullptr,
          0);
#else
  if (count == 1) {
    word.notify_one();
  } else {
    word.notify_all();
  }
#endif
}

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));

/// A process-wide asymmetric store-load barrier, after Linux's membarrier(2) (as in folly's
/// asymmetricHeavyBarrier and liburcu): the frequent side (a notifier) pays a compiler barrier,
/// the rare side (a thread about to sleep) pays one membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)
/// system call, which runs a full memory barrier on every CPU running a thread of this process
/// before it returns (a thread not running is past a context switch, itself a full barrier).
/// Where the kernel refuses to register (before Linux 4.14, a seccomp filter, or a nohz_full
/// kernel, which offers no MEMBARRIER_CMD_GLOBAL to fall back on), or when built
/// with OFFLOAD_NO_MEMBARRIER (CMake: -DOFFLOAD_MEMBARRIER=OFF), both sides use a seq_cst fence, as
/// everywhere off Linux.
///
/// The choice is made once, on first use (an executor's constructor), and never changes, so
/// both sides of every pairing agree on it. "Once" is per copy of this inline function: every
/// module (executable or shared library) that shares an executor across its boundary must be
/// built with the same OFFLOAD_NO_MEMBARRIER setting and default symbol visibility (the
/// default), so that the modules share one copy.
class asymmetric_barrier {
 public:
  /// True when light() is a compiler barrier and heavy() the membarrier system call.
  static bool expedited() noexcept {
    static const bool registered = register_process();
    return registered;
  }

  /// The frequent side: orders this thread's earlier stores before its later loads against any
  /// heavy() on another thread.
  static void light() noexcept {
    if (expedited()) {
      std::atomic_signal_fence(std::memory_order_seq_cst);  // the compiler keeps program order
    } else {
      std::atomic_thread_fence(std::memory_order_seq_cst);
    }
  }

  /// The rare side: a full barrier here and, before it returns, on every running thread.
  static void heavy() noexcept {
    if (expedited()) {
      expedited_barrier();
    } else {
      std::atomic_thread_fence(std::memory_order_seq_cst);
    }
  }

 private:
  // membarrier(2) commands (linux/membarrier.h; spelled out so that older headers build).
  static constexpr int k_cmd_query = 0;
  static constexpr int k_cmd_global = 1;  // MEMBARRIER_CMD_GLOBAL: slow, needs no registration
  static constexpr int k_cmd_private_expedited = 1 << 3;
  static constexpr int k_cmd_register_private_expedited = 1 << 4;

  static long membarrier(int command) noexcept {
#if defined(__linux__) && defined(SYS_membarrier)
    return syscall(SYS_membarrier, command, 0, 0);
#else
    (void)command;
    return -1;
#endif
  }

  static bool register_process() noexcept {
#if defined(OFFLOAD_NO_MEMBARRIER)
    return false;
#else
    const long commands = membarrier(k_cmd_query);
    if (commands < 0 || (commands & k_cmd_private_expedited) == 0 ||
        (commands & k_cmd_global) == 0) {
      return false;
    }
    return membarrier(k_cmd_register_private_expedited) == 0;
#endif
  }

  /// The expedited barrier. It can still fail after registration (ENOMEM from a kernel that
  /// allocates a CPU mask, EPERM from a seccomp filter installed later): it is retried, then
  /// replaced by MEMBARRIER_CMD_GLOBAL, which waits for every CPU to pass a barrier (milliseconds,
  /// but correct). A notifier skipped its fence, so a wait without a barrier could lose a
  /// wake-up: if both fail, the process ends with a message rather than risk a hang.
  [[gnu::noinline]] static void expedited_barrier() noexcept {
    for (int attempt = 0; attempt < 3; ++attempt) {
      if (membarrier(k_cmd_private_expedited) == 0)
        return;
    }
    if (membarrier(k_cmd_global) == 0)
      return;
    std::fputs("offload: membarrier() failed; build with -DOFFLOAD_NO_MEMBARRIER to use fences\n",
               stderr);
    std::abort();
  }
};

/// The operating-system side of an event count: futex sleep/wake and the store-load barriers.
struct os_platform {
  /// Whether the checker in use sees the barriers. ThreadSanitizer sees neither fences nor
  /// membarrier, so under TSan the barrier-based edges are expressed with RMWs instead (see [E1]
  /// and [E2']).
  static constexpr bool k_fences_checked = !OFFLOAD_TSAN;
  static void wait(std::atomic<std::uint32_t>& word,
                   std::uint32_t expected,
                   std::chrono::nanoseconds timeout) {
    futex_wait(word, expected, timeout);
  }
  static void wake(std::atomic<std::uint32_t>& word, int count) { futex_wake(word, count); }
  /// [E1]'s barrier: run on every notify, so the light side.
  static void notifier_barrier() noexcept {
#if !OFFLOAD_TSAN  // under TSan never called: k_fences_checked is false
    asymmetric_barrier::light();
#endif
  }
  /// [E2']'s barrier: run once per wait, before a thread sleeps, so the heavy side.
  static void waiter_barrier() noexcept {
#if !OFFLOAD_TSAN
    asymmetric_barrier::heavy();
#endif
  }
};

/// Event count: the condition-variable-without-a-mutex used for parking workers.
///
/// Waiter protocol (no lost wake-up):
/// @code
///   auto key = ec.prepare_wait();
///   if (condition()) { ec.cancel_wait(); return; }   // re-check after announcing ourselves
///   ec.commit_wait(key);                               // sleeps unless notified since prepare
/// @endcode
/// Notifier protocol: make the condition true (e.g. push a task), then call notify_one() or
/// notify_all().
///
/// Guarantee: if a notifier makes the condition true and then calls notify, and a waiter's
/// re-check after prepare_wait() misses it, then that notify sees the waiter and wakes it (or a
/// later commit_wait with that key returns at once). Cost: notify with no waiter is a load and a
/// compiler barrier (a seq_cst fence where membarrier is missing, see [E1]): no RMW on a shared
/// line and no syscall. prepare_wait() pays one membarrier call instead (microseconds when another
/// thread of the process is running, for the inter-processor interrupt; see docs/benchmarks.md),
/// which a thread about to sleep can afford.
/// Thread-safe.
///
/// @tparam Atomic the atomic template; std::atomic in production, a Relacy adapter in the model.
/// @tparam Platform futex and fence operations; os_platform in production.
template <template <class> class Atomic = std::atomic, class Platform = os_platform>
class basic_event_count {
 public:
  struct key {
    std::uint32_t epoch;
  };

  /// Announces the caller as a waiter. Must be followed by cancel_wait() or commit_wait().
  key prepare_wait() noexcept {
    // [E2] seq_cst RMW; pairs with the seq_cst load of m_waiters in notify [E1]: in the single
    // total order either the notifier's load sees this increment, or this waiter's re-check of the
    // condition (after [E3]) sees what the notifier published before [E1].
    m_waiters.fetch_add(1, std::memory_order_seq_cst);
    // [E2'] store-load barrier; pairs with the barrier in [E1]. In the C++ model an RMW alone
    // does not order the caller's later non-seq_cst re-check reads; with a barrier on both sides,
    // either the notifier's load sees our increment or our re-check sees the notifier's
    // condition. In production this is the heavy half of asymmetric_barrier (a membarrier call),
    // so that the notifier's half, paid on every push, is a compiler barrier; in the Relacy model
    // and where membarrier is missing, both halves are seq_cst fences. Under TSan the RMW-to-RMW
    // release/acquire chain [E1]/[E2] gives the same edge, visibly.
    if constexpr (Platform::k_fences_checked)
      Platform::waiter_barrier();
    // [E3] seq_cst load; with [E2] it orders our announcement before the caller's re-check, and its
    // acquire half pairs with the release of the epoch bump [E4], so a notify that bumped the epoch
    // before this load also published its condition to us.
    return key{m_epoch.load(std::memory_order_seq_cst)};
  }

  /// Withdraws a prepare_wait() without sleeping.
  void cancel_wait() noexcept { m_waiters.fetch_sub(1, std::memory_order_relaxed); }

  /// Sleeps until a notify after prepare_wait() (returns at once if one already happened), a
  /// spurious wake-up, or the timeout (zero = none).
  void commit_wait(key k, std::chrono::nanoseconds timeout = std::chrono::nanoseconds::zero()) {
    // [E5] acquire; pairs with [E4]: a wake-up that changed the epoch publishes the condition.
    if (m_epoch.load(std::memory_order_acquire) == k.epoch)
      Platform::wait(m_epoch, k.epoch, timeout);
    (void)m_epoch.load(std::memory_order_acquire);  // [E5'] acquire after waking; pairs with [E4]
    m_waiters.fetch_sub(1, std::memory_order_relaxed);
  }

  /// Wakes one waiter, if any. The caller has made the condition true before calling.
  void notify_one() noexcept { notify(1); }

  /// Wakes all waiters, if any. The caller has made the condition true before calling.
  void notify_all() noexcept { notify(INT32_MAX); }

  /// Racy count of announced waiters (for metrics and tests).
  std::uint32_t waiters_hint() const noexcept { return m_waiters.load(std::memory_order_relaxed); }

 private:
  void notify(int count) noexcept {
    // [E1] store-load barrier, then seq_cst load; pairs with [E2]/[E2']. The notifier's
    // condition (published with ordinary release/relaxed stores, e.g. in a queue) must be ordered
    // before this load: a seq_cst fence does that in the C++ model, and so does the light half of
    // asymmetric_barrier against the waiter's heavy half. Under ThreadSanitizer, which models
    // neither, the same edge is expressed as a seq_cst RMW on m_waiters, which TSan sees as
    // release/acquire against the waiter's RMW [E2].
    if constexpr (Platform::k_fences_checked) {
      Platform::notifier_barrier();
      if (m_waiters.load(std::memory_order_seq_cst) == 0)
        return;
    } else {
      if (m_waiters.fetch_add(0, std::memory_order_seq_cst) == 0)
        return;
    }
    // [E4] release RMW; pairs with [E3]/[E5]: a waiter that sees the new epoch sees the condition.
    m_epoch.fetch_add(1, std::memory_order_release);
    Platform::wake(m_epoch, count);
  }

  alignas(k_cache_line) Atomic<std::uint32_t> m_epoch{0};    // bumped by notify; futex word
  alignas(k_cache_line) Atomic<std::uint32_t> m_waiters{0};  // waiters between prepare and end
};

using event_count = basic_event_count<>;

}  // namespace offload::detail
