#pragma once

/// @file task_options.hpp
/// @brief Per-task options for executor::submit and executor::post.

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>

#include "offload/clock.hpp"
#include "offload/lane.hpp"
#include "offload/retry_policy.hpp"

namespace offload {

/// A token bucket: at most `burst` tasks at once, refilled at `per_second` tasks per second.
struct rate_limit {
  double per_second = 0;  ///< Accepted: 0.001 to 1e9.
  double burst = 1;       ///< Accepted: 1 to 1e9.
};

struct task_options;
namespace detail {
inline bool needs_attempt_policy(const task_options& o) noexcept;
}  // namespace detail

/// Options of one task: an aggregate for designated initializers. The leading field order is part
/// of the public contract: lane, retry, delay, deadline, key, name.
struct task_options {
  /// Priority lane. Default, lane::inherit: inside a worker, the lane of the task that submits
  /// it; outside the pool, lane::normal (as for a submission without task_options).
  offload::lane lane = offload::lane::inherit;
  /// Retries with backoff; default one attempt. After the last attempt the task is dead-lettered
  /// and its future throws the last exception.
  /// (A prvalue, not `{}`: GCC 12 destroys a member built from a nested braced list twice when a
  /// later member's initializer throws, and warns about it at -O3.)
  offload::retry_policy retry = offload::retry_policy();
  /// Start no earlier than this after submission (waits in a timer, not in a worker). >= 0.
  clock::duration delay{};
  /// If the task has not started by then it never runs: its future throws offload::expired
  /// (resolved at the deadline, not when a worker reaches it).
  std::optional<clock::time_point> deadline{};
  /// De-duplication: while a task with this key is pending or running, submitting the key again
  /// returns a future of that task instead of starting a second (see executor::submit). Empty:
  /// none. Costs one record per key while its task is pending or running, freed when it ends.
  std::string key{};
  /// Name reported to hooks, failure handlers and dead letters. Empty: unnamed. Costs one shared
  /// text per distinct name in use, freed once no task, plan or dead letter holds it.
  std::string name{};
  /// Rate limit shared by all tasks with this name (or, unnamed, by the lane's unnamed tasks):
  /// a task that finds no token waits in the timer, holding no worker, until one is due. The
  /// first submission of a name fixes its bucket's parameters.
  std::optional<offload::rate_limit> rate{};

  /// Throws std::invalid_argument naming the first invalid field.
  void validate() const {
    if (!is_lane(lane) && lane != offload::lane::inherit) {
      throw std::invalid_argument(
          "offload::task_options.lane must be critical, high, normal, low or inherit, got " +
          std::to_string(static_cast<unsigned>(lane)));
    }
    if (delay < clock::duration::zero()) {
      throw std::invalid_argument("offload::task_options.delay must not be negative, got " +
                                  std::to_string(delay.count()) + " ticks");
    }
    retry.validate();
    if (rate && !(rate->per_second >= 1e-3 && rate->per_second <= 1e9)) {
      throw std::invalid_argument(
          "offload::task_options.rate.per_second must be in [0.001, 1e9], got " +
          std::to_string(rate->per_second));
    }
    if (rate && !(rate->burst >= 1 && rate->burst <= 1e9)) {
      throw std::invalid_argument("offload::task_options.rate.burst must be in [1, 1e9], got " +
                                  std::to_string(rate->burst));
    }
  }

  /// True if the task needs the policy path (timers, retries, dead letters, de-duplication).
  bool needs_policy() const noexcept {
    return delay > clock::duration::zero() || detail::needs_attempt_policy(*this);
  }
};

namespace detail {
/// What the policy path does for each attempt beyond a delayed start: retries, a deadline, a
/// key, a rate limit. Without any, a delayed task is a plain task waiting in the timer, and a
/// periodic schedule accepts the options.
inline bool needs_attempt_policy(const task_options& o) noexcept {
  return o.retry.max_attempts > 1 || static_cast<bool>(o.retry.retry_if) ||
         o.deadline.has_value() || !o.key.empty() || o.rate.has_value();
}
}  // namespace detail

}  // namespace offload
