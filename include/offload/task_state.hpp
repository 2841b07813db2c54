#pragma once

/// @file task_state.hpp
/// @brief task_state, what future::state() reports.

#include <cstdint>
#include <string_view>

namespace offload {

/// Where a task is in its life. The last four are terminal and never change once reached.
enum class task_state : std::uint8_t {
  queued,     ///< ready, waiting for a worker
  scheduled,  ///< waiting for its delay
  running,    ///< executing now
  retrying,   ///< failed an attempt, waiting for its retry timer
  succeeded,
  failed,     ///< threw on its last attempt (or a failure retry_if refused)
  cancelled,  ///< future::cancel() before it ran, or shutdown
  expired,    ///< its deadline passed before it started
};

constexpr bool is_terminal(task_state s) noexcept {
  return s >= task_state::succeeded;
}

constexpr std::string_view to_string(task_state s) noexcept {
  switch (s) {
    case task_state::queued:
      return "queued";
    case task_state::scheduled:
      return "scheduled";
    case task_state::running:
      return "running";
    case task_state::retrying:
      return "retrying";
    case task_state::succeeded:
      return "succeeded";
    case task_state::failed:
      return "failed";
    case task_state::cancelled:
      return "cancelled";
    case task_state::expired:
      return "expired";
  }
  return "unknown";
}

}  // namespace offload
