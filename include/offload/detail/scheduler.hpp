#pragma once

/// @file scheduler.hpp
/// @brief The narrow interface futures and task groups use to reach the executor that runs them,
/// and the thread-local record of "this thread is a worker of scheduler S".

#include <functional>

#include "offload/detail/task.hpp"

namespace offload::detail {

/// What futures and task groups need from an executor.
class scheduler {
 public:
  /// Queues a task: on the calling worker's own deque if the caller is one of this scheduler's
  /// workers, else on the injection queue. Throws offload::rejected if the scheduler no longer
  /// accepts work; the task then still belongs to the caller, who must discard it. Thread-safe.
  virtual void schedule(task_node* task) = 0;

  /// Runs or helps run queued work on the calling worker until `done()` returns true. Used by
  /// waits inside tasks so that a pool of one worker never deadlocks. Calling worker only.
  virtual void help_until(const std::function<bool()>& done) = 0;

 protected:
  ~scheduler() = default;
};

/// Set on each worker thread for its whole life; null on other threads.
inline thread_local scheduler* tl_current_scheduler = nullptr;

}  // namespace offload::detail
