#pragma once

/// @file attempt_end.hpp
/// @brief How an attempt of a policy task ended when it did not end the task, as the pool's
/// runner sees it: values run_task() may return beyond task_outcome's.

#include <cstddef>

#include "offload/task_events.hpp"

namespace offload::detail {

/// An attempt that ended by scheduling a retry: not a final outcome, so not counted as completed.
inline constexpr task_outcome k_outcome_retried = static_cast<task_outcome>(k_outcome_count);
/// A start put off to wait for a rate-limit token: not an attempt, not a final outcome.
inline constexpr task_outcome k_outcome_deferred = static_cast<task_outcome>(k_outcome_count + 1);

/// Set by a policy task that recorded its own dead letter, so the pool does not add one.
inline thread_local bool tl_dead_letter_recorded = false;

}  // namespace offload::detail
