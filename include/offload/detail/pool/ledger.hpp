#pragma once

/// @file ledger.hpp
/// @brief ledger: the counts of tasks that no worker resolved, the half of the counting invariant
/// (Σ completed == Σ submitted exactly when idle) that the workers' own counters do not hold.

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "offload/detail/event_count.hpp"
#include "offload/lane.hpp"
#include "offload/task_events.hpp"

namespace offload::detail {

/// Written by any thread that resolves a task without a worker (a discard after the workers
/// stopped, an enqueue refused after counting, a task run by its submitter under caller_runs);
/// read by the pool's quiescent() and by metrics(). Also where wait_idle() callers sleep.
/// Thread-safe.
class ledger {
 public:
  /// Counts a task resolved by no worker with outcome `o`.
  void resolve(std::size_t l, task_outcome o) noexcept {
    // [M2] release; pairs with [M1] in resolved(): the resolution is visible with the count.
    m_resolved[l][static_cast<std::size_t>(o)].fetch_add(1, std::memory_order_release);
  }

  std::uint64_t resolved(std::size_t l, std::size_t o) const noexcept {
    return m_resolved[l][o].load(std::memory_order_acquire);  // [M1] acquire; pairs with [M2]
  }

  /// An attempt run by its submitter (caller_runs) that was not final: a retry or a rate-limit
  /// deferral follows, so it leaves the queue as far as the queued gauge goes.
  void count_taken(std::size_t l, bool retry) noexcept {
    // [M3] release; pairs with [M4]'s acquire in taken(): counted before the node is visible to
    // the timer, so a reader that sees the retry fire sees this attempt too.
    m_taken[l].fetch_add(1, std::memory_order_release);
    // A metrics-only count (relaxed): nothing decides on it, and retried() may read it one retry
    // behind taken().
    if (retry)
      m_retried[l].fetch_add(1, std::memory_order_relaxed);
  }

  std::uint64_t taken(std::size_t l) const noexcept {
    return m_taken[l].load(std::memory_order_acquire);  // [M4] acquire; pairs with [M3]
  }

  std::uint64_t retried(std::size_t l) const noexcept {
    return m_retried[l].load(std::memory_order_relaxed);
  }

  /// A task starts on its submitting thread (caller_runs). Relaxed: the producer gate's release
  /// [X4] publishes it to shutdown's [X3].
  void caller_began() noexcept { m_on_callers.fetch_add(1, std::memory_order_relaxed); }

  /// That task's accounting is done.
  void caller_ended() noexcept {
    // [O1] release; pairs with the acquire in wait_for_callers() [O2]: the task's accounting is
    // done before shutdown() may return.
    m_on_callers.fetch_sub(1, std::memory_order_release);
    m_quiet.notify_all();
  }

  /// Shutdown: waits until no task runs on a submitting thread.
  void wait_for_callers() {
    for (;;) {
      auto key = m_quiet.prepare_wait();
      if (m_on_callers.load(std::memory_order_acquire) == 0) {  // [O2]
        m_quiet.cancel_wait();
        return;
      }
      m_quiet.commit_wait(key);
    }
  }

  /// wait_idle() callers sleep here; whoever may have made the pool idle notifies it.
  event_count& quiet() noexcept { return m_quiet; }

 private:
  std::array<std::array<std::atomic<std::uint64_t>, k_outcome_count>, k_lane_count> m_resolved{};
  std::array<std::atomic<std::uint64_t>, k_lane_count> m_taken{};
  std::array<std::atomic<std::uint64_t>, k_lane_count> m_retried{};
  std::atomic<std::uint32_t> m_on_callers{0};  // tasks running on submitters now (caller_runs)
  event_count m_quiet;
};

}  // namespace offload::detail
