#pragma once

/// @file task_options.hpp
/// @brief Per-task options for executor::submit and executor::post.

#include <string>

#include "offload/lane.hpp"

namespace offload {

/// Options of one task: an aggregate for designated initializers. The leading field order is part
/// of the public contract (lane, retry, delay, deadline, key, name); fields the executor does not
/// support yet are absent rather than ignored.
struct task_options {
  /// Priority lane. (A task submitted without task_options from inside a worker takes the lane
  /// of the task that submits it; from outside the pool, lane::normal.)
  offload::lane lane = offload::lane::normal;
  /// Name reported to hooks and failure handlers. Empty: unnamed.
  std::string name{};
};

}  // namespace offload
