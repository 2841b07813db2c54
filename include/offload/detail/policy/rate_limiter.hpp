#pragma once

/// @file rate_limiter.hpp
/// @brief rate_limiter: token buckets by name (or lane), for task_options::rate.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <iterator>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "offload/clock.hpp"
#include "offload/detail/saturating_time.hpp"
#include "offload/detail/thread_annotations.hpp"

namespace offload::detail {

/// One bucket per key: it refills at `per_second` up to `burst`, and each take() removes one
/// token, now or (when none is left) reserved ahead, so over any window w a bucket grants at
/// most burst + per_second × w starts. A bucket that has refilled to full says nothing a new one
/// would not, so buckets full at the time of a sweep are dropped: the table holds the keys in use
/// (rate-limited recently), not every key ever seen. Thread-safe.
class rate_limiter {
 public:
  /// Takes a token of `key`'s bucket (created full with these settings if absent; an existing
  /// bucket keeps its own). Nothing if one was available at `now`, else the time at which the
  /// token taken (reserved) becomes available.
  std::optional<clock::time_point> take(const std::string& key,
                                        double per_second,
                                        double burst,
                                        clock::time_point now) {
    scoped_lock lock(m_mutex);
    if (m_buckets.size() >= m_sweep_at)
      sweep(now);
    auto [it, inserted] = m_buckets.try_emplace(key);
    bucket& b = it->second;
    if (inserted) {
      b.per_second = per_second;
      b.burst = burst;
      b.tokens = burst;
      b.refilled = now;
    }
    b.refill(now);
    b.tokens -= 1;  // taken now, or reserved: a negative balance is the queue of reservations
    if (b.tokens >= 0)
      return std::nullopt;
    return saturating_add(
        now,
        saturating_cast<clock::duration>(std::chrono::duration<double>(-b.tokens / b.per_second)));
  }

  /// Buckets held now.
  std::size_t size() const {
    scoped_lock lock(m_mutex);
    return m_buckets.size();
  }

 private:
  struct bucket {
    double per_second = 1;
    double burst = 1;
    double tokens = 0;
    clock::time_point refilled{};
    void refill(clock::time_point now) noexcept {
      const double elapsed = std::chrono::duration<double>(now - refilled).count();
      tokens = std::min(burst, tokens + std::max(0.0, elapsed) * per_second);
      refilled = now;
    }
  };

  /// Drops the buckets that are full at `now`, and sets the next sweep at twice what is left
  /// (at least k_min_sweep), so sweeping costs O(1) per take amortized.
  void sweep(clock::time_point now) OFFLOAD_REQUIRES(m_mutex) {
    for (auto it = m_buckets.begin(); it != m_buckets.end();) {
      it->second.refill(now);
      it = it->second.tokens >= it->second.burst ? m_buckets.erase(it) : std::next(it);
    }
    m_sweep_at = std::max(k_min_sweep, 2 * m_buckets.size());
  }

  static constexpr std::size_t k_min_sweep = 64;  // buckets held before the first sweep

  mutable annotated_mutex m_mutex;
  std::unordered_map<std::string, bucket> m_buckets OFFLOAD_GUARDED_BY(m_mutex);
  std::size_t m_sweep_at OFFLOAD_GUARDED_BY(m_mutex) = k_min_sweep;
};

}  // namespace offload::detail
