#pragma once

/// @file metrics_json.hpp
/// @brief JSON renderings of metrics_snapshot and health_report, built with nlohmann-json.
///
/// A separate header so that the core does not depend on nlohmann-json: include it only where
/// JSON is wanted, and make <nlohmann/json.hpp> available (Debian: nlohmann-json3-dev; CMake:
/// find_package(nlohmann_json 3 REQUIRED) and link nlohmann_json::nlohmann_json).
///
/// The layout (every duration in seconds; docs/metrics.md has an example):
/// @code{.json}
/// {"lanes": {"critical": {"submitted": 0, "rejected": 0,
///                         "completed": {"succeeded": 0, "failed": 0, "cancelled": 0,
///                                       "expired": 0},
///                         "retries": 0, "queued": 0, "scheduled": 0, "running": 0,
///                         "wait": {"count": 0, "sum_seconds": 0.0, "buckets": [0, ...]},
///                         "run": {...}},
///            "high": {...}, "normal": {...}, "low": {...}},
///  "workers": [{"index": 0, "tasks_run": 0, "steals": 0, "parks": 0,
///               "heartbeat_age_seconds": 0.0}],
///  "dead_letters": 0,
///  "bucket_upper_bounds_seconds": [2.56e-07, 3.84e-07, ...]}
/// @endcode
/// `buckets` holds per-bucket counts (not cumulative), one per histogram_snapshot bucket:
/// buckets[i] counts durations below bucket_upper_bounds_seconds[i] (and at or above the previous
/// bound); the last bucket has no upper bound, so bucket_upper_bounds_seconds has one entry
/// fewer than `buckets` (JSON has no infinity).

#include <cstddef>
#include <string>

#include <nlohmann/json.hpp>

#include "offload/health.hpp"
#include "offload/lane.hpp"
#include "offload/metrics.hpp"
#include "offload/task_events.hpp"

namespace offload {

namespace detail {

inline nlohmann::json histogram_json(const histogram_snapshot& h) {
  nlohmann::json buckets = nlohmann::json::array();
  for (std::uint64_t b : h.buckets) buckets.push_back(b);
  return {{"count", h.count}, {"sum_seconds", h.sum_seconds}, {"buckets", std::move(buckets)}};
}

inline nlohmann::json lane_json(const lane_metrics& l) {
  nlohmann::json completed = nlohmann::json::object();
  for (std::size_t o = 0; o < k_outcome_count; ++o)
    completed[std::string(to_string(static_cast<task_outcome>(o)))] = l.completed[o];
  return {{"submitted", l.submitted},
          {"rejected", l.rejected},
          {"completed", std::move(completed)},
          {"retries", l.retries},
          {"queued", l.queued},
          {"scheduled", l.scheduled},
          {"running", l.running},
          {"wait", histogram_json(l.wait)},
          {"run", histogram_json(l.run)}};
}

}  // namespace detail

/// The snapshot as a JSON object (layout above), compact, on one line. Thread-safe (reads only
/// `m`).
inline std::string to_json(const metrics_snapshot& m) {
  nlohmann::json lanes = nlohmann::json::object();
  for (std::size_t i = 0; i < k_lane_count; ++i)
    lanes[std::string(to_string(static_cast<lane>(i)))] = detail::lane_json(m.lanes[i]);
  nlohmann::json workers = nlohmann::json::array();
  for (const worker_metrics& w : m.workers) {
    workers.push_back({{"index", w.index},
                       {"tasks_run", w.tasks_run},
                       {"steals", w.steals},
                       {"parks", w.parks},
                       {"heartbeat_age_seconds", w.heartbeat_age_seconds}});
  }
  nlohmann::json bounds = nlohmann::json::array();
  for (std::size_t b = 0; b + 1 < histogram_snapshot::bucket_count; ++b)
    bounds.push_back(histogram_snapshot::upper_bound_seconds(b));
  nlohmann::json j = {{"lanes", std::move(lanes)},
                      {"workers", std::move(workers)},
                      {"dead_letters", m.dead_letters},
                      {"bucket_upper_bounds_seconds", std::move(bounds)}};
  return j.dump();
}

/// The health report as a JSON object, compact, on one line:
/// `{"healthy": bool, "live": bool, "workers_alive": n, "workers_stuck": n,
///   "workers": [{"index", "alive", "stuck", "running_for_seconds"}, ...],
///   "lanes": {"critical": {"queued": n, "oldest_queued_age_seconds": s}, ...}}`.
/// Thread-safe (reads only `h`).
inline std::string to_json(const health_report& h) {
  nlohmann::json workers = nlohmann::json::array();
  for (const worker_health& w : h.workers) {
    workers.push_back({{"index", w.index},
                       {"alive", w.alive},
                       {"stuck", w.stuck},
                       {"running_for_seconds", w.running_for_seconds}});
  }
  nlohmann::json lanes = nlohmann::json::object();
  for (std::size_t i = 0; i < k_lane_count; ++i) {
    lanes[std::string(to_string(static_cast<lane>(i)))] = {
        {"queued", h.queued[i]}, {"oldest_queued_age_seconds", h.oldest_queued_age_seconds[i]}};
  }
  nlohmann::json j = {{"healthy", h.healthy()},
                      {"live", h.live()},
                      {"workers_alive", h.workers_alive},
                      {"workers_stuck", h.workers_stuck},
                      {"workers", std::move(workers)},
                      {"lanes", std::move(lanes)}};
  return j.dump();
}

}  // namespace offload
