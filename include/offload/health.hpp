#pragma once

/// @file health.hpp
/// @brief health_report: what executor::health() returns.

#include <array>
#include <cstdint>
#include <vector>

#include "offload/lane.hpp"

namespace offload {

/// One worker as seen from outside it.
struct worker_health {
  unsigned index = 0;
  bool alive = false;  ///< its thread is running (false only after shutdown)
  bool stuck = false;  ///< seen inside one task for longer than executor_options::stuck_after
  /// How long this worker has been seen inside its current task (no task finished) across calls
  /// of health() and metrics(); 0 while idle and at the first sighting of a task.
  double running_for_seconds = 0;
};

/// A health check, computed by the calling thread from the workers' progress counters: a worker
/// blocked inside a task shows as stuck while the rest of the pool keeps running. Workers are
/// timed from outside, so a stuck worker is detected by a check that comes more than stuck_after
/// after an earlier check (or metrics() call) saw it in the same task: poll periodically.
struct health_report {
  std::vector<worker_health> workers;
  unsigned workers_alive = 0;
  unsigned workers_stuck = 0;
  /// Tasks accepted and not yet taken by a worker, per lane.
  std::array<std::uint64_t, k_lane_count> queued{};
  /// Estimated age of the oldest queued task per lane, 0 when the lane has nothing queued: the
  /// time since the later of (a) the enqueue of the most recent timed task (one in
  /// timing_sample_interval) that started in that lane, and (b) the first enqueue after a worker
  /// last parked with every queue empty (or the executor's start). An upper bound while the lane
  /// drains in FIFO order, lagging by up to timing_sample_interval tasks; it keeps growing while
  /// the lane makes no progress, and does not count time the pool spent idle. (b) can date a task
  /// up to one wake-up late when several producers enqueue at the moment a worker parks.
  std::array<double, k_lane_count> oldest_queued_age_seconds{};

  /// Every worker alive and none stuck.
  bool healthy() const noexcept {
    return workers_alive == workers.size() && workers_stuck == 0 && !workers.empty();
  }
  /// At least one worker alive and not stuck: the pool still makes progress.
  bool live() const noexcept { return workers_alive > workers_stuck; }
};

}  // namespace offload
