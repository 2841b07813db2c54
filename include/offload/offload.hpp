#pragma once

/// @file offload.hpp
/// @brief The only include you need: the executor, futures, task groups and combinators.

#include "offload/error.hpp"
#include "offload/executor.hpp"
#include "offload/executor_options.hpp"
#include "offload/future.hpp"
#include "offload/task_group.hpp"
#include "offload/version.hpp"
#include "offload/when_all.hpp"
