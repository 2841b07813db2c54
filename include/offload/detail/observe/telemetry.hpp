#pragma once

/// @file telemetry.hpp
/// @brief telemetry: the readers of a pool (stats(), metrics(), health()), computed by the
/// calling thread from the counters every thread keeps for itself.

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

#include "offload/detail/policy/dead_letter_store.hpp"
#include "offload/detail/pool/pool.hpp"
#include "offload/detail/thread_annotations.hpp"
#include "offload/detail/tick_clock.hpp"
#include "offload/executor_stats.hpp"
#include "offload/health.hpp"
#include "offload/lane.hpp"
#include "offload/metrics.hpp"
#include "offload/task_events.hpp"

namespace offload::detail {

/// Writes nothing a worker reads: only its own record of what it saw of each worker (m_seen,
/// under m_mutex). Thread-safe.
class telemetry {
 public:
  telemetry(const pool& p, const dead_letter_store& dead_letters) noexcept
      : m_pool(p), m_dead(dead_letters) {}
  telemetry(const telemetry&) = delete;
  telemetry& operator=(const telemetry&) = delete;

  /// Counters summed over all threads at the time of the call (not an atomic snapshot).
  executor_stats stats() const {
    executor_stats s;
    // Completions are read before submissions (see quiescent()), so completed <= submitted.
    s.completed = m_pool.completed_total();
    for (const auto& w : m_pool.workers()) {
      s.failed_detached += w->counters.failed.read();
      s.steals += w->counters.steals.read();
      s.parks += w->counters.parks.read();
      if (w->fibers) {
        s.fibers += w->fibers->fiber_count();
        s.suspended += w->fibers->suspended();
      }
    }
    s.fiber_stack_bytes = s.fibers * m_pool.options().fiber_stack_size;
    s.submitted = m_pool.submitted_total();
    return s;
  }

  /// Per-lane counters, gauges and histograms, and per-worker figures, summed from per-thread
  /// counters now (no lock on the workers' path; not an atomic snapshot: see lane_metrics).
  metrics_snapshot metrics() const {
    metrics_snapshot m;
    const std::uint64_t now = detail::tick_clock::now_ns();
    std::array<std::uint64_t, k_lane_count> resolved_outside{};
    std::array<std::uint64_t, k_lane_count> completed_by_workers{};
    std::array<std::uint64_t, k_lane_count> taken{};
    // Read order: outcomes (completed, resolved outside, retried), then the timer's counts, then
    // taken, then submitted: each flow is read after the flows that follow it in a task's life,
    // so the derived gauges stay within the tasks in flight during the call (and are clamped).
    for (std::size_t l = 0; l < k_lane_count; ++l) {
      lane_metrics& lm = m.lanes[l];
      for (std::size_t o = 0; o < k_outcome_count; ++o) {
        const std::uint64_t outside = m_pool.resolved_outside().resolved(l, o);  // [M1]
        resolved_outside[l] += outside;
        lm.completed[o] += outside;
        for (const auto& w : m_pool.workers()) {
          const std::uint64_t c = w->counters.lanes[l].completed[o].read();
          completed_by_workers[l] += c;
          lm.completed[o] += c;
        }
      }
      lm.retries = m_pool.resolved_outside().retried(l);
      taken[l] = m_pool.resolved_outside().taken(l);  // [M4]
      for (const auto& w : m_pool.workers()) lm.retries += w->counters.lanes[l].retried.read();
    }
    const auto timers = m_pool.timers().read_counts();
    std::array<std::uint64_t, k_lane_count> running_now{};
    for (const auto& w : m_pool.workers()) {
      for (std::size_t l = 0; l < k_lane_count; ++l)
        running_now[l] += w->counters.lanes[l].running();
    }
    for (std::size_t l = 0; l < k_lane_count; ++l) {
      lane_metrics& lm = m.lanes[l];
      for (const auto& w : m_pool.workers()) {
        const auto& lc = w->counters.lanes[l];
        taken[l] += lc.taken.read();
        std::uint64_t sum_ns = 0;
        lc.wait.add_to(lm.wait.buckets, sum_ns);
        lm.wait.sum_seconds += static_cast<double>(sum_ns) * 1e-9;
        sum_ns = 0;
        lc.run.add_to(lm.run.buckets, sum_ns);
        lm.run.sum_seconds += static_cast<double>(sum_ns) * 1e-9;
      }
      for (auto b : lm.wait.buckets) lm.wait.count += b;
      for (auto b : lm.run.buckets) lm.run.count += b;
    }
    m_pool.read_submissions(m.lanes);
    auto clamp = [](std::int64_t v) {
      return v > 0 ? static_cast<std::uint64_t>(v) : std::uint64_t{0};
    };
    for (std::size_t l = 0; l < k_lane_count; ++l) {
      lane_metrics& lm = m.lanes[l];
      const auto i = [](std::uint64_t v) {
        return static_cast<std::int64_t>(v);
      };
      lm.scheduled = clamp(i(timers.in_delay[l]) + i(timers.in_retry[l]) - i(timers.fired[l]) -
                           i(timers.dropped[l]));
      // Tasks in progress now, counted where they run (bounded by the workers and the waits that
      // nest on them): per worker, taken - (completed + retried + deferred).
      lm.running = running_now[l];
      lm.queued = clamp(i(lm.submitted) - i(timers.in_delay[l]) + i(timers.fired[l]) - i(taken[l]) -
                        (i(resolved_outside[l]) - i(timers.dropped[l])));
    }
    m.dead_letters = m_dead.size();
    const std::vector<double> running_for = observe_workers(now);
    for (const auto& w : m_pool.workers()) {
      worker_metrics wm;
      wm.index = w->index;
      wm.tasks_run = w->counters.finished();
      wm.steals = w->counters.steals.read();
      wm.parks = w->counters.parks.read();
      wm.heartbeat_age_seconds = running_for[w->index];
      m.workers.push_back(wm);
    }
    return m;
  }

  /// Workers alive and stuck, and per lane the queued count and the oldest queued task's age;
  /// computed by the calling thread from the workers' heartbeats.
  health_report health() const {
    health_report h;
    const std::uint64_t now = detail::tick_clock::now_ns();
    const double stuck_after = std::chrono::duration<double>(m_pool.options().stuck_after).count();
    const std::vector<double> running_for = observe_workers(now);
    for (const auto& w : m_pool.workers()) {
      worker_health wh;
      wh.index = w->index;
      wh.alive = w->counters.alive.load(std::memory_order_relaxed);
      wh.running_for_seconds = running_for[w->index];
      wh.stuck = wh.alive && wh.running_for_seconds > stuck_after;
      h.workers_alive += wh.alive ? 1 : 0;
      h.workers_stuck += wh.stuck ? 1 : 0;
      h.workers.push_back(wh);
    }
    const metrics_snapshot m = metrics();
    for (std::size_t l = 0; l < k_lane_count; ++l) {
      h.queued[l] = m.lanes[l].queued;
      if (h.queued[l] == 0)
        continue;
      std::uint64_t newest_taken = 0;
      for (const auto& w : m_pool.workers()) {
        newest_taken =
            std::max(newest_taken,
                     w->counters.lanes[l].last_taken_enqueued_ns.load(std::memory_order_relaxed));
      }
      // The oldest task queued now came after the newest one taken (FIFO per lane), and after
      // the last time a worker parked with everything empty (if a task arrived since).
      const std::uint64_t since =
          std::max({newest_taken, m_pool.started_ns(), m_pool.refilled_ns()});
      h.oldest_queued_age_seconds[l] = now > since ? static_cast<double>(now - since) * 1e-9 : 0.0;
    }
    return h;
  }

 private:
  /// Heartbeats, observed from outside: for each worker, how long it has been seen inside one
  /// task (running, and no task finished) across calls of metrics() and health(). The first
  /// observation of a task starts its clock, so the figure is a lower bound that is exact to the
  /// interval between observations; workers pay nothing for it beyond two counters.
  std::vector<double> observe_workers(std::uint64_t now) const {
    scoped_lock lock(m_mutex);
    m_seen.resize(m_pool.workers().size());
    std::vector<double> running_for(m_pool.workers().size(), 0.0);
    for (const auto& w : m_pool.workers()) {
      watch& seen = m_seen[w->index];
      const std::uint64_t finished = w->counters.finished();
      bool busy = false;
      std::uint64_t running = 0;
      for (const auto& lc : w->counters.lanes) running += lc.running();
      // Tasks suspended in a wait (with the tasks they ran nested) hold no worker.
      busy = running > w->suspended_frames.load(std::memory_order_relaxed);
      if (busy && seen.busy && seen.finished == finished) {
        // Both stamps may come from different cores: clamp the skew (see tick_clock).
        running_for[w->index] =
            now > seen.since_ns ? static_cast<double>(now - seen.since_ns) * 1e-9 : 0.0;
      } else {
        seen = {finished, busy, now};
      }
    }
    return running_for;
  }

  struct watch {
    std::uint64_t finished = 0;
    bool busy = false;
    std::uint64_t since_ns = 0;
  };

  const pool& m_pool;
  const dead_letter_store& m_dead;
  mutable annotated_mutex m_mutex;  // metrics() and health()
  mutable std::vector<watch> m_seen OFFLOAD_GUARDED_BY(m_mutex);
};

}  // namespace offload::detail
