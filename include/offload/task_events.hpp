#pragma once

/// @file task_events.hpp
/// @brief Outcomes of tasks and the optional hooks that observe them.

#include <cstdint>
#include <exception>
#include <functional>
#include <string_view>

#include "offload/lane.hpp"

namespace offload {

/// How a task ended. Labels of offload_tasks_completed_total{outcome}.
enum class task_outcome : std::uint8_t {
  succeeded,  ///< ran and returned
  failed,     ///< ran and threw
  cancelled,  ///< never ran: its future was cancelled, or the executor shut down with cancel
  expired,    ///< never ran: its deadline passed first (reserved for deadlines)
};

/// Number of outcomes.
inline constexpr std::size_t k_outcome_count = 4;

/// The outcome's label: "succeeded", "failed", "cancelled", "expired".
constexpr std::string_view to_string(task_outcome o) noexcept {
  switch (o) {
    case task_outcome::succeeded:
      return "succeeded";
    case task_outcome::failed:
      return "failed";
    case task_outcome::cancelled:
      return "cancelled";
    case task_outcome::expired:
      return "expired";
  }
  return "unknown";
}

/// What a hook is told about a task. `name` is empty for unnamed tasks and valid only during the
/// call. `error` is set for failures only.
struct task_event {
  std::string_view name;
  offload::lane lane = offload::lane::normal;
  task_outcome outcome = task_outcome::succeeded;  ///< on_finished only
  std::exception_ptr error{};                      ///< on_failure, and on_finished when failed
};

/// Optional observers, called on the thread where the event happens (the submitter for
/// on_submitted, a worker for the others). Each must be cheap and must not throw (an exception is
/// swallowed). Unset hooks cost one predictable branch per task.
struct task_hooks {
  /// A task threw (submit or post). Called on the worker after the task ended; its future may
  /// already hold the exception.
  std::function<void(const task_event&)> on_failure{};
  /// A task was accepted.
  std::function<void(const task_event&)> on_submitted{};
  /// A worker is about to run a task.
  std::function<void(const task_event&)> on_started{};
  /// A task ended, with its outcome (cancelled tasks included).
  std::function<void(const task_event&)> on_finished{};
};

}  // namespace offload
