#pragma once

/// @file metrics.hpp
/// @brief metrics_snapshot (what executor::metrics() returns) and its Prometheus text exposition.

#include <array>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "offload/detail/histogram.hpp"
#include "offload/lane.hpp"
#include "offload/task_events.hpp"

namespace offload {

/// A duration histogram: per-bucket counts (not cumulative), their total, and the sum.
/// Buckets: [0, 256 ns), then two per power of two up to 2^36 ns (~69 s), then +Inf.
struct histogram_snapshot {
  static constexpr std::size_t bucket_count = detail::duration_buckets::k_count;
  std::array<std::uint64_t, bucket_count> buckets{};
  std::uint64_t count = 0;   ///< sum of buckets
  double sum_seconds = 0.0;  ///< sum of the recorded durations

  /// Inclusive upper bound of bucket i in seconds (+infinity for the last).
  static double upper_bound_seconds(std::size_t i) noexcept {
    return detail::duration_buckets::upper_bound_ns(i) * 1e-9;
  }
  /// Upper bound of the bucket that holds quantile q (0..1), in seconds; 0 when empty.
  double quantile_upper_bound_seconds(double q) const noexcept {
    if (count == 0)
      return 0.0;
    const double rank = q * static_cast<double>(count);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < bucket_count; ++i) {
      seen += buckets[i];
      if (static_cast<double>(seen) >= rank && seen > 0)
        return upper_bound_seconds(i);
    }
    return upper_bound_seconds(bucket_count - 1);
  }
};

/// Counters and gauges of one lane. While the pool is idle,
/// submitted == completed_total() + queued + scheduled + running exactly; under load the
/// difference is bounded by the tasks in flight during the snapshot.
struct lane_metrics {
  std::uint64_t submitted = 0;  ///< accepted submissions
  std::uint64_t rejected = 0;   ///< refused submissions (shutdown, or the lane full under reject)
  std::array<std::uint64_t, k_outcome_count> completed{};  ///< by task_outcome
  std::uint64_t retries = 0;                               ///< failed attempts scheduled again
  std::uint64_t queued = 0;                                ///< accepted, not yet taken by a worker
  std::uint64_t scheduled = 0;                             ///< waiting for a delay or retry timer
  std::uint64_t running = 0;                               ///< taken by a worker and not finished
  histogram_snapshot wait;  ///< ready → started (sampled: executor_options::timing_sample_interval)
  histogram_snapshot run;  ///< started → finished (the same sampled tasks)

  std::uint64_t completed_of(task_outcome o) const noexcept {
    return completed[static_cast<std::size_t>(o)];
  }
  std::uint64_t completed_total() const noexcept {
    std::uint64_t n = 0;
    for (auto c : completed) n += c;
    return n;
  }
};

/// Figures of one worker thread.
struct worker_metrics {
  unsigned index = 0;
  std::uint64_t tasks_run = 0;  ///< tasks taken and finished (including skipped cancelled ones)
  std::uint64_t steals = 0;     ///< tasks taken from another worker's deque
  std::uint64_t parks = 0;      ///< times it went to sleep
  /// Time since the worker last showed life (finished a task), as observed by metrics() and
  /// health() calls: 0 while it is idle (searching or asleep, it answers new work at once), else
  /// how long it has been seen inside its current task (see executor::health()).
  double heartbeat_age_seconds = 0.0;
};

/// What executor::metrics() returns: summed from per-thread counters at the time of the call,
/// without stopping the workers.
struct metrics_snapshot {
  std::array<lane_metrics, k_lane_count> lanes{};
  std::vector<worker_metrics> workers;
  std::uint64_t dead_letters = 0;  ///< records in the dead-letter store

  const lane_metrics& of(offload::lane l) const noexcept { return lanes[index_of(l)]; }
};

namespace detail {

inline void append_number(std::string& out, double v) {
  if (v == std::numeric_limits<double>::infinity()) {
    out += "+Inf";
    return;
  }
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}
inline void append_number(std::string& out, std::uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}
inline void append_header(std::string& out,
                          std::string_view name,
                          std::string_view type,
                          std::string_view help) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n");
  out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}
template <class V>
void append_sample(std::string& out, std::string_view name, std::string_view labels, V value) {
  out.append(name);
  if (!labels.empty())
    out.append("{").append(labels).append("}");
  out.append(" ");
  append_number(out, value);
  out.append("\n");
}
inline std::string lane_label(lane l) {
  return std::string("lane=\"").append(to_string(l)).append("\"");
}
inline void append_histogram(std::string& out,
                             std::string_view name,
                             std::string_view help,
                             const metrics_snapshot& m,
                             histogram_snapshot lane_metrics::*which) {
  append_header(out, name, "histogram", help);
  const std::string bucket = std::string(name) + "_bucket";
  for (std::size_t i = 0; i < k_lane_count; ++i) {
    const lane l = static_cast<lane>(i);
    const histogram_snapshot& h = m.lanes[i].*which;
    std::uint64_t cumulative = 0;
    for (std::size_t b = 0; b < histogram_snapshot::bucket_count; ++b) {
      cumulative += h.buckets[b];
      std::string labels = lane_label(l) + ",le=\"";
      append_number(labels, histogram_snapshot::upper_bound_seconds(b));
      labels += "\"";
      append_sample(out, bucket, labels, cumulative);
    }
    append_sample(out, std::string(name) + "_sum", lane_label(l), h.sum_seconds);
    append_sample(out, std::string(name) + "_count", lane_label(l), h.count);
  }
}

}  // namespace detail

/// The snapshot in the Prometheus text exposition format (version 0.0.4), with the metric names
/// of docs/metrics.md. Validated by `promtool check metrics` in the tests.
inline std::string to_prometheus(const metrics_snapshot& m) {
  using detail::append_header;
  using detail::append_sample;
  using detail::lane_label;
  std::string out;
  out.reserve(64 * 1024);
  auto per_lane =
      [&](std::string_view name, std::string_view type, std::string_view help, auto value_of) {
        append_header(out, name, type, help);
        for (std::size_t i = 0; i < k_lane_count; ++i)
          append_sample(out, name, lane_label(static_cast<lane>(i)), value_of(m.lanes[i]));
      };
  per_lane("offload_tasks_submitted_total",
           "counter",
           "Accepted submissions.",
           [](const lane_metrics& l) {
             return l.submitted;
           });
  per_lane(
      "offload_tasks_rejected_total", "counter", "Refused submissions.", [](const lane_metrics& l) {
        return l.rejected;
      });
  append_header(out,
                "offload_tasks_completed_total",
                "counter",
                "Tasks ended, by outcome (failed: for good).");
  for (std::size_t i = 0; i < k_lane_count; ++i) {
    for (std::size_t o = 0; o < k_outcome_count; ++o) {
      const std::string labels = lane_label(static_cast<lane>(i)) + ",outcome=\"" +
                                 std::string(to_string(static_cast<task_outcome>(o))) + "\"";
      append_sample(out, "offload_tasks_completed_total", labels, m.lanes[i].completed[o]);
    }
  }
  per_lane("offload_task_retries_total",
           "counter",
           "Attempts that failed and were scheduled again.",
           [](const lane_metrics& l) {
             return l.retries;
           });
  per_lane("offload_tasks_queued",
           "gauge",
           "Tasks ready and waiting for a worker.",
           [](const lane_metrics& l) {
             return l.queued;
           });
  per_lane("offload_tasks_scheduled",
           "gauge",
           "Tasks waiting for a delay or a retry timer.",
           [](const lane_metrics& l) {
             return l.scheduled;
           });
  per_lane("offload_tasks_running", "gauge", "Tasks executing now.", [](const lane_metrics& l) {
    return l.running;
  });
  detail::append_histogram(
      out, "offload_task_wait_seconds", "Time from ready to started.", m, &lane_metrics::wait);
  detail::append_histogram(
      out, "offload_task_run_seconds", "Time from started to finished.", m, &lane_metrics::run);
  append_header(out,
                "offload_worker_heartbeat_age_seconds",
                "gauge",
                "Time since the worker last showed life (0 while idle).");
  for (const worker_metrics& w : m.workers) {
    std::string labels = "worker=\"";
    detail::append_number(labels, static_cast<std::uint64_t>(w.index));
    labels += "\"";
    append_sample(out, "offload_worker_heartbeat_age_seconds", labels, w.heartbeat_age_seconds);
  }
  append_header(out, "offload_dead_letters", "gauge", "Records held in the dead-letter store.");
  append_sample(out, "offload_dead_letters", "", m.dead_letters);
  return out;
}

}  // namespace offload
