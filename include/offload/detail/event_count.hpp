#pragma once

/// @file event_count.hpp
/// @brief Event count: lets threads sleep until "something may have changed" without lost
/// wake-ups and without a syscall on the notify side when nobody sleeps (after folly's EventCount
/// and Taskflow's notifier).

#include <atomic>
#include <chrono>
#include <cstdint>
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

/// The operating-system side of an event count: futex sleep/wake and the seq_cst fence.
struct os_platform {
  /// Whether the checker in use sees standalone fences. ThreadSanitizer does not, so under TSan
  /// the fence-based edges are expressed with RMWs instead (see [E1] and [E2']).
  static constexpr bool k_fences_checked = !OFFLOAD_TSAN;
  static void wait(std::atomic<std::uint32_t>& word,
                   std::uint32_t expected,
                   std::chrono::nanoseconds timeout) {
    futex_wait(word, expected, timeout);
  }
  static void wake(std::atomic<std::uint32_t>& word, int count) { futex_wake(word, count); }
  static void fence_seq_cst() {
#if !OFFLOAD_TSAN  // under TSan never called: k_fences_checked is false
    std::atomic_thread_fence(std::memory_order_seq_cst);
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
/// later commit_wait with that key returns at once). Cost: notify with no waiter is a seq_cst
/// load (plus a fence in the Dekker pair, see [E1]); no RMW on a shared line and no syscall.
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
    // [E2'] seq_cst fence; pairs with the fence in [E1]. In the C++ model an RMW alone does not
    // order the caller's later non-seq_cst re-check reads; with both fences in the total order,
    // either the notifier's load sees our increment or our re-check sees the notifier's condition.
    // Under TSan the RMW-to-RMW release/acquire chain [E1]/[E2] gives the same edge, visibly.
    if constexpr (Platform::k_fences_checked)
      Platform::fence_seq_cst();
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
    // [E1] store-load barrier, then seq_cst load; pairs with [E2]. The notifier's condition
    // (published with ordinary release/relaxed stores, e.g. in a queue) must be ordered before
    // this load: in the C++ model a seq_cst fence does that. Under ThreadSanitizer, which does not
    // model fences, the same edge is expressed as a seq_cst RMW on m_waiters, which TSan sees as
    // release/acquire against the waiter's RMW [E2].
    if constexpr (Platform::k_fences_checked) {
      Platform::fence_seq_cst();
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
