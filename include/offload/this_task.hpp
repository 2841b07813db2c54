#pragma once

/// @file this_task.hpp
/// @brief offload::this_task: what a running task can ask about itself.

#include <atomic>
#include <chrono>
#include <cmath>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

#include "offload/clock.hpp"
#include "offload/detail/saturating_time.hpp"
#include "offload/detail/scheduler.hpp"
#include "offload/detail/shared_state.hpp"
#include "offload/error.hpp"

namespace offload {

/// Thrown by a task to ask for a retry after `delay` (this_task::retry_after throws it). It
/// counts as a failed attempt: past max_attempts the task fails with this exception.
class retry_request : public error {
 public:
  explicit retry_request(clock::duration d)
      : error("offload: the task asked to be retried"), m_delay(d) {}
  clock::duration delay() const noexcept { return m_delay; }

 private:
  clock::duration m_delay;
};

namespace detail {

/// The running task's context on a worker thread (null/1 outside a task or for plain tasks).
struct task_context {
  const shared_state_base* state = nullptr;  // the task's future state, if it has one
  unsigned attempt = 1;
  /// The task_group::cancel() flag of the group the task was run by, if any.
  const std::atomic<bool>* group_cancelled = nullptr;
  /// Where this_task::set_progress() writes (a result_store entry's), if anywhere.
  std::atomic<double>* progress = nullptr;
  /// The id a result_store gave the task (this_task::id()), if any.
  const std::string* store_id = nullptr;

  bool stop_requested() const noexcept {
    // relaxed: a flag carrying no data; coherence makes a cancel() that happened-before visible.
    return (state != nullptr && state->cancel_requested()) ||
           (group_cancelled != nullptr && group_cancelled->load(std::memory_order_relaxed));
  }
};
inline thread_local task_context tl_task_context{};

/// Sets the calling thread's task context for its lifetime, restoring the previous one after
/// (tasks nest when a waiting task helps run others).
class task_context_scope {
 public:
  explicit task_context_scope(task_context c) noexcept : m_saved(tl_task_context) {
    tl_task_context = c;
  }
  ~task_context_scope() { tl_task_context = m_saved; }
  task_context_scope(const task_context_scope&) = delete;
  task_context_scope& operator=(const task_context_scope&) = delete;

 private:
  task_context m_saved;
};

}  // namespace detail

namespace this_task {

/// The executor running the calling task (also in its then() continuations and coroutine
/// resumptions on a worker); null outside one of an executor's workers. Lets recursive code
/// spawn without carrying an executor& (oneTBB's task_group, Taskflow's Runtime).
inline offload::executor* executor() noexcept {
  const detail::scheduler* s = detail::tl_current_scheduler;
  return s != nullptr ? s->owner() : nullptr;
}

/// The id a result_store gave the calling task (Celery's `self.request.id`), for logs and error
/// messages; empty for any other task and outside one.
inline std::string_view id() noexcept {
  const std::string* i = detail::tl_task_context.store_id;
  return i != nullptr ? std::string_view(*i) : std::string_view();
}

/// Reports how far the calling task is, in percent ([0, 100]), for those who poll it: a task
/// submitted through a result_store shows the highest value it reported in
/// result_view::progress() (a retry starting over does not move it back). Elsewhere it does
/// nothing. Throws std::invalid_argument for a value outside [0, 100] (NaN included).
inline void set_progress(double percent) {
  if (!(percent >= 0 && percent <= 100))
    throw std::invalid_argument(
        "offload::this_task::set_progress: percent must be in [0, 100], got " +
        std::to_string(percent));
  if (std::atomic<double>* p = detail::tl_task_context.progress) {
    // The highest value wins: a retried attempt that starts its loop again does not move a
    // progress bar back. relaxed: a gauge, no data behind it.
    double seen = p->load(std::memory_order_relaxed);
    while ((std::isnan(seen) || percent > seen) &&
           !p->compare_exchange_weak(seen, percent, std::memory_order_relaxed)) {
    }
  }
}

/// 1 on the first execution of the calling task, 2 on its first retry, and so on. 1 outside a
/// task.
inline unsigned attempt() noexcept {
  return detail::tl_task_context.attempt;
}

/// True if the calling task's future was cancelled while it runs, or the task_group that runs it
/// was (task_group::cancel()). Cooperative: a long task polls it and returns early. False outside
/// a task and for tasks with neither (post).
inline bool stop_requested() noexcept {
  return detail::tl_task_context.stop_requested();
}

/// Ends the calling attempt and asks for a retry after `delay` instead of the policy's backoff
/// (throws offload::retry_request; the task needs a retry_policy with attempts left). A delay
/// beyond the clock's range waits until then (it saturates).
template <class Rep, class Period>
[[noreturn]] void retry_after(std::chrono::duration<Rep, Period> delay) {
  throw retry_request(detail::saturating_cast<clock::duration>(delay));
}

/// Pauses the calling task for at least `d`, or less if its future is cancelled meanwhile. In a
/// task on a worker (fibers on) only the task waits: its fiber is suspended on the executor's
/// timer (following executor_options::clock) and the worker runs other work meanwhile.
/// Elsewhere, or with fibers off, the thread sleeps. A duration beyond the clock's range sleeps
/// until then (it saturates; it does not wrap into the past).
template <class Rep, class Period>
void sleep_for(std::chrono::duration<Rep, Period> duration) {
  const clock::duration d = detail::saturating_cast<clock::duration>(duration);
  if (detail::scheduler* s = detail::tl_current_scheduler) {
    s->sleep_for(d);
    return;
  }
  if (d > clock::duration::zero())
    std::this_thread::sleep_for(d);
}

/// Lets other work go first: in a task on a worker (fibers on), the calling task continues
/// once the worker has started another task (or at once if it has nothing else to run).
/// Elsewhere, std::this_thread::yield().
inline void yield() {
  if (detail::scheduler* s = detail::tl_current_scheduler; s != nullptr && s->yield_task())
    return;
  std::this_thread::yield();
}

}  // namespace this_task
}  // namespace offload
