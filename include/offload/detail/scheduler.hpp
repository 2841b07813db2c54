#pragma once

/// @file scheduler.hpp
/// @brief The narrow interface futures and task groups use to reach the executor that runs them,
/// and the thread-local record of "this thread is a worker of scheduler S".

#include <functional>

#include "offload/clock.hpp"
#include "offload/detail/fiber_wake.hpp"
#include "offload/detail/task_node.hpp"
#include "offload/error.hpp"

namespace offload {
class executor;
}  // namespace offload

namespace offload::detail {

/// What futures and task groups need from an executor.
class scheduler {
 public:
  /// Queues a continuation of accepted work (a then() step) in the lane of the calling task (on
  /// the calling worker's own deque if the caller is one of this scheduler's workers, else on the
  /// injection queue): never refused for capacity and accepted until the scheduler stops. Throws
  /// offload::rejected once stopped; the task then still belongs to the caller, who must discard
  /// it. Thread-safe.
  virtual void schedule(task_node* task) = 0;

  /// Runs or helps run queued work on the calling worker (and lets its woken fibers run) until
  /// `done()` returns true, then returns true. Used by waits inside tasks that cannot suspend, so
  /// that a pool of one worker never deadlocks. Returns false, without waiting further, when the
  /// calling stack has no room left to run another task nested: the caller must then wait
  /// without helping, or refuse the wait (refuse_wait()). Calling worker only.
  virtual bool help_until(const std::function<bool()>& done) = 0;

  /// Queues a task in the lane already set in task->lane: a continuation of accepted work (a
  /// coroutine resuming), accepted until the scheduler stops, never refused for capacity.
  /// Throws offload::rejected once stopped (the task is then still the caller's). Thread-safe.
  virtual void schedule_in_lane(task_node* task) = 0;

  /// The lane of the task running on the calling worker (lane::normal elsewhere).
  virtual offload::lane running_lane() const noexcept = 0;

  /// Runs `action` (a small task: it must not block) after `d` on this scheduler's timer, or
  /// discards it at once (discard_reason::shutdown) if the timer no longer runs. Takes it. With
  /// an `owner`, cancel_call(owner) can take it back before it is due.
  virtual void call_after(clock::duration d, task_node* action, const void* owner = nullptr) = 0;

  /// Takes back and discards the pending action of call_after() with `owner`; false if it is
  /// due already (it runs, or ran) or none is pending.
  virtual bool cancel_call(const void* owner) noexcept = 0;

  /// Runs one task from the calling worker's own deques (the waiter's most recent spawns, LIFO)
  /// if there is one and the calling fiber has stack room to nest it. Calling worker only.
  virtual bool run_local_task() = 0;

  /// Suspends the calling task's fiber; `a.arm(f)` registers f with what the task waits for,
  /// once f is suspended, and make_ready(f) resumes it (on this worker). False, without waiting,
  /// if the task cannot suspend (fibers off, no memory for a fiber, or inside a catch block on
  /// a C++ runtime whose exception state is not swapped per fiber): the caller must then wait
  /// another way. Calling worker only.
  virtual bool suspend(suspend_arm& a) = 0;

  /// Suspends the calling task for `d` on this scheduler's clock (or, if it cannot suspend,
  /// sleeps the thread). Calling worker only.
  virtual void sleep_for(clock::duration d) = 0;

  /// Lets the calling worker run other queued work (one task, if any) before the calling task
  /// continues. False if the task cannot suspend.
  virtual bool yield_task() = 0;

  /// The executor whose tasks this scheduler runs (this_task::executor()); null until set.
  offload::executor* owner() const noexcept { return m_owner; }

 protected:
  ~scheduler() = default;

  /// Written once by the executor's constructor, before anything can be submitted to it; read
  /// by tasks, which were queued after it.
  offload::executor* m_owner = nullptr;
};

/// Ends a wait inside a task that can neither suspend (fibers off, or no fiber stack could be
/// mapped) nor help (its stack has no room to run another task): throws offload::error, so that
/// the task fails with a reason instead of overflowing its stack or deadlocking its worker.
[[noreturn]] inline void refuse_wait() {
  throw offload::error(
      "offload: a task cannot wait here: it cannot suspend (fibers are off, or no guarded fiber "
      "stack could be mapped) and its stack has no room left to run other tasks while it waits");
}

/// Set on each worker thread for its whole life; null on other threads.
inline thread_local scheduler* tl_current_scheduler = nullptr;

}  // namespace offload::detail
