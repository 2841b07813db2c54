#pragma once

/// @file offload.hpp
/// @brief The only include you need: the executor, futures, task groups, combinators, lanes,
/// metrics and health.

#include "offload/clock.hpp"
#include "offload/dead_letter.hpp"
#include "offload/error.hpp"
#include "offload/executor.hpp"
#include "offload/executor_options.hpp"
#include "offload/future.hpp"
#include "offload/health.hpp"
#include "offload/lane.hpp"
#include "offload/manual_reset_event.hpp"
#include "offload/metrics.hpp"
#include "offload/parallel_for.hpp"
#include "offload/periodic.hpp"
#include "offload/placement.hpp"
#include "offload/result_store.hpp"
#include "offload/retry_policy.hpp"
#include "offload/task.hpp"
#include "offload/task_events.hpp"
#include "offload/task_group.hpp"
#include "offload/task_mutex.hpp"
#include "offload/task_options.hpp"
#include "offload/task_state.hpp"
#include "offload/this_task.hpp"
#include "offload/version.hpp"
#include "offload/when_all.hpp"
