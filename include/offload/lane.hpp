#pragma once

/// @file lane.hpp
/// @brief Priority lanes: critical, high, normal, low.

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace offload {

/// A task's priority lane, highest first. Workers take from the highest lane that has work, except
/// that a starvation guard regularly serves the lower lanes first (executor_options::
/// starvation_guard; the bound is in docs/guarantees.md, G5).
///
/// `inherit` is not a lane but the default of task_options::lane: the task takes the lane of the
/// task that submits it (inside a worker), or lane::normal (outside the pool), as a submission
/// without options does. Any other value is refused by validate() (std::invalid_argument).
enum class lane : std::uint8_t { critical, high, normal, low, inherit = 0xff };

/// Number of lanes; lanes convert to indexes 0 (critical) .. k_lane_count - 1 (low).
inline constexpr std::size_t k_lane_count = 4;

/// True for the four lanes (not for lane::inherit, nor for a value out of range).
constexpr bool is_lane(lane l) noexcept {
  return static_cast<std::size_t>(l) < k_lane_count;
}

/// The lane's index, 0 for critical.
constexpr std::size_t index_of(lane l) noexcept {
  return static_cast<std::size_t>(l);
}

/// The lane's name as used in metrics labels: "critical", "high", "normal", "low".
constexpr std::string_view to_string(lane l) noexcept {
  switch (l) {
    case lane::critical:
      return "critical";
    case lane::high:
      return "high";
    case lane::normal:
      return "normal";
    case lane::low:
      return "low";
    case lane::inherit:
      return "inherit";
  }
  return "unknown";
}

}  // namespace offload
