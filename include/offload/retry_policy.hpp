#pragma once

/// @file retry_policy.hpp
/// @brief retry_policy (task_options::retry) and the backoff formula.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <functional>
#include <stdexcept>
#include <string>

#include "offload/clock.hpp"

namespace offload {

/// How the wait before retry k (k = 1 for the first retry) grows.
enum class backoff {
  fixed,        ///< base_delay
  linear,       ///< base_delay × k
  exponential,  ///< base_delay × 2^(k-1)
};

/// Randomization applied to the capped delay d.
enum class jitter {
  none,  ///< d
  full,  ///< uniform in [0, d]
  equal  ///< d/2 + uniform in [0, d/2]
};

/// When and how often a failed task runs again: an aggregate for designated initializers (the
/// leading field order is part of the public contract). Default: one attempt, no retry.
struct retry_policy {
  /// Total executions, the first included; 1 = no retry. Accepted: 1 to 1,000,000.
  unsigned max_attempts = 1;
  offload::backoff backoff = offload::backoff::exponential;
  /// Delay before the first retry. Accepted: 0 to max_delay.
  clock::duration base_delay = std::chrono::milliseconds(100);
  /// Cap on the delay, applied before jitter. Accepted: base_delay to 365 days.
  clock::duration max_delay = std::chrono::seconds(60);
  offload::jitter jitter = offload::jitter::none;
  /// Which failures are retried; unset: all. A failure it refuses ends the task at once (failed,
  /// dead-lettered). Called on the worker; must not throw (a throw counts as "don't retry").
  std::function<bool(const std::exception_ptr&)> retry_if{};

  /// Throws std::invalid_argument naming the first invalid field.
  void validate() const {
    if (static_cast<unsigned>(backoff) > static_cast<unsigned>(offload::backoff::exponential)) {
      throw std::invalid_argument(
          "offload::retry_policy.backoff must be fixed, linear or exponential, got " +
          std::to_string(static_cast<int>(backoff)));
    }
    if (static_cast<unsigned>(jitter) > static_cast<unsigned>(offload::jitter::equal)) {
      throw std::invalid_argument("offload::retry_policy.jitter must be none, full or equal, got " +
                                  std::to_string(static_cast<int>(jitter)));
    }
    if (max_attempts < 1 || max_attempts > 1'000'000) {
      throw std::invalid_argument(
          "offload::retry_policy.max_attempts must be in [1, 1000000] (1 = no retry), got " +
          std::to_string(max_attempts));
    }
    if (base_delay < clock::duration::zero()) {
      throw std::invalid_argument("offload::retry_policy.base_delay must not be negative, got " +
                                  std::to_string(base_delay.count()) + " ticks");
    }
    if (max_delay < base_delay) {
      throw std::invalid_argument(
          "offload::retry_policy.max_delay must be at least base_delay (the cap cannot be below "
          "the base), got max_delay " +
          std::to_string(max_delay.count()) + " < base_delay " +
          std::to_string(base_delay.count()) + " ticks");
    }
    if (max_delay > std::chrono::hours(24 * 365)) {
      throw std::invalid_argument("offload::retry_policy.max_delay must be at most 365 days");
    }
  }
};

/// The wait before retry k (k >= 1) under `p`: the backoff formula, capped at max_delay, then
/// jittered with `uniform01`, a number in [0, 1]. Deterministic, so tests can check vectors.
inline clock::duration retry_delay(const retry_policy& p, unsigned k, double uniform01) noexcept {
  using rep = clock::rep;
  const double base = static_cast<double>(p.base_delay.count());
  const double cap = static_cast<double>(p.max_delay.count());
  double d = base;
  switch (p.backoff) {
    case backoff::fixed:
      d = base;
      break;
    case backoff::linear:
      d = base * static_cast<double>(k);
      break;
    case backoff::exponential:
      d = base * std::ldexp(1.0, static_cast<int>(std::min(k, 1100u)) - 1);
      break;
  }
  d = std::min(d, cap);
  const double u = std::clamp(uniform01, 0.0, 1.0);
  switch (p.jitter) {
    case jitter::none:
      break;
    case jitter::full:
      d = d * u;
      break;
    case jitter::equal:
      d = d / 2 + (d / 2) * u;
      break;
  }
  return clock::duration(static_cast<rep>(d));
}

}  // namespace offload
