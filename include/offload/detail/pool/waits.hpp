#pragma once

/// @file waits.hpp
/// @brief pool_waits: what a task waiting inside the pool does: suspends its fiber, sleeps on the
/// timer, yields, or runs other tasks nested while it waits (helping), never overflowing a stack.

#include <algorithm>
#include <bit>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <stop_token>
#include <utility>

#include "offload/clock.hpp"
#include "offload/detail/atomic.hpp"
#include "offload/detail/fiber.hpp"
#include "offload/detail/pool/timed.hpp"
#include "offload/detail/shared_state.hpp"
#include "offload/detail/sleep_wake.hpp"
#include "offload/detail/task_node.hpp"
#include "offload/detail/worker.hpp"
#include "offload/lane.hpp"
#include "offload/this_task.hpp"

namespace offload::detail {

/// Runs on the waiting task's worker only: writes that worker's fields (fiber_depth,
/// suspended_frames, current_lane) and the thread-locals of the task it suspends.
class pool_waits : public pool_timed {
 public:
  using pool_timed::pool_timed;

  bool run_local_task() final {
    worker& w = *tl_worker;
    // Nest only while the stack has room (see room_to_nest()): deep chains of waits suspend
    // instead, so waiting never overflows a stack.
    if (!room_to_nest(w))
      return false;
    // Lanes never used have nothing in any deque (relaxed: a lane this worker pushed to was
    // marked by this thread, before the push).
    for (std::uint32_t used = m_lanes_used.load(std::memory_order_relaxed); used != 0;
         used &= used - 1) {
      const auto l = static_cast<std::size_t>(std::countr_zero(used));
      if (w.deque(l).empty_hint())
        continue;
      if (auto local = w.deque(l).pop()) {
        if (w.fibers)
          w.fibers->count_start();
        execute_inline(w, *local);
        return true;
      }
    }
    return false;
  }

  bool suspend(suspend_arm& a) final {
    worker& w = *tl_worker;
    if (!w.fibers || !w.fibers->can_suspend())
      return false;
    // Thread-locals that other tasks on this worker use while this one waits: saved here, and
    // reset so that the tasks run meanwhile start from a clean slate (their scopes then nest
    // within this fiber's own).
    const task_context task = std::exchange(tl_task_context, {});
    const offload::lane task_lane = std::exchange(w.current_lane, offload::lane::normal);
    failure_note failure = std::move(tl_failure);
    // The tasks running on this fiber (the waiter and those it ran nested) stop counting as busy.
    const std::uint32_t depth = std::exchange(w.fiber_depth, 0);
    w.suspended_frames.store(w.suspended_frames.load(std::memory_order_relaxed) + depth,
                             std::memory_order_relaxed);
    const bool dead_letter_recorded = std::exchange(tl_dead_letter_recorded, false);
    const continuation_queue continuations = std::exchange(tl_continuations, {});
    bool suspended = true;
    try {
      w.fibers->suspend(a);
    } catch (...) {  // no memory for a new fiber: the caller waits another way
      suspended = false;
    }
    w.suspended_frames.store(w.suspended_frames.load(std::memory_order_relaxed) - depth,
                             std::memory_order_relaxed);
    w.fiber_depth = depth;
    tl_task_context = task;
    w.current_lane = task_lane;
    tl_failure = std::move(failure);
    tl_dead_letter_recorded = dead_letter_recorded;
    tl_continuations = continuations;
    return suspended;
  }

  /// this_task::sleep_for() in a task: suspends the task's fiber on a timer entry (or sleeps the
  /// thread where it cannot suspend). Ends early when the task's future is cancelled, and when
  /// shutdown(cancel) stops the timer.
  void sleep_for(clock::duration d) final {
    const shared_state_base* task = tl_task_context.state;
    if (d <= clock::duration::zero() || (task != nullptr && task->cancel_requested()))
      return;
    const clock::time_point due = m_timers.after(d);
    if (sleep_suspended(d, task) &&
        (m_timers.now() >= due || (task != nullptr && task->cancel_requested()))) {
      return;
    }
    // Not suspended (fibers off, no memory for a fiber) or woken early because the timer
    // stopped: the thread sleeps what is left, unless cancelling. A manual clock is not waited
    // for here.
    if (m_options.clock || cancelling())
      return;
    sleep_on_thread(due, task);
  }

  bool yield_task() final {
    worker& w = *tl_worker;
    if (!w.fibers || !w.fibers->can_suspend())
      return false;
    struct to_yielded final : suspend_arm {
      fiber_runtime* rt;
      explicit to_yielded(fiber_runtime* r) noexcept : rt(r) {}
      void arm(fiber_handle* suspended) noexcept override {
        rt->push_yielded(static_cast<fiber*>(suspended));
      }
    } arm{w.fibers.get()};
    return suspend(arm);
  }

  bool help_until(const std::function<bool()>& done) final {
    worker& w = *current_worker();
    auto nap = k_help_first_nap;
    unsigned idle = 0;
    while (!done()) {
      // A woken or yielded fiber of this worker may be what `done` waits for, and only the
      // worker loop resumes it: let it run first (no new stack is needed to switch to it).
      if (w.fibers && (w.fibers->has_ready() || w.fibers->has_yielded()) && yield_task()) {
        idle = 0;
        continue;
      }
      if (!room_to_nest(w))
        return false;  // running another task here could overflow this stack
      if (task_node* node = find_task(w)) {
        execute(w, node);
        idle = 0;
        nap = k_help_first_nap;
        continue;
      }
      if (++idle < k_help_spins) {
        cpu_relax_round();
        continue;
      }
      // Nothing to run: sleep until new work arrives or a short timeout, then re-check done().
      // The timeout bounds the delay when `done` becomes true without new work (the awaited
      // task finished on another worker); it doubles up to k_help_last_nap while nothing happens.
      auto key = m_idle.prepare_wait();
      if (done()) {
        m_idle.cancel_wait();
        break;
      }
      if (task_node* node = find_task(w)) {
        m_idle.cancel_wait();
        execute(w, node);
        continue;
      }
      m_idle.commit_wait(key, nap);
      nap = std::min(nap * 2, k_help_last_nap);
    }
    return true;
  }

 protected:
  ~pool_waits() = default;

  /// True if the calling worker's current stack (its fiber's, or the thread's) has room to run
  /// another task nested: a quarter of it, between 16 KiB and 256 KiB, stays free.
  static bool room_to_nest(worker& w) noexcept {
    const stack_bounds& stack = w.fibers ? w.fibers->current_stack() : w.thread_stack;
    return stack.room() >= stack.reserve();
  }

 private:
  /// help_until(): empty searches (each a short pause) before it sleeps on the event count.
  static constexpr unsigned k_help_spins = 64;
  /// help_until(): its first sleep, doubled while nothing happens, up to the last.
  static constexpr std::chrono::microseconds k_help_first_nap{50};
  static constexpr std::chrono::microseconds k_help_last_nap{1000};

  /// Suspends the calling task on a timer entry after `d` (cut short if `task`, its future's
  /// state, is cancelled); true if it suspended.
  bool sleep_suspended(clock::duration d, const shared_state_base* task) {
    worker& w = *tl_worker;
    if (!w.fibers || !w.fibers->can_suspend())
      return false;
    struct arm_sleep final : suspend_arm {
      pool_waits* self;
      clock::duration d;
      const shared_state_base* task;
      arm_sleep(pool_waits* p, clock::duration dur, const shared_state_base* t) noexcept
          : self(p), d(dur), task(t) {}
      void arm(fiber_handle* suspended) noexcept override {
        try {
          auto wake = std::make_shared<sleep_wake>([suspended] {
            fiber_wake_list::make_ready(suspended);
          });
          wake->arm(*self, d, task);  // if the timer refuses, the discard resumes the fiber now
        } catch (...) {               // no memory: resume now, sleep on the thread
          fiber_wake_list::make_ready(suspended);
        }
      }
    } arm{this, d, task};
    return suspend(arm);
  }

  /// Sleeps the calling thread until `due`, or until `task` (if any) is cancelled.
  static void sleep_on_thread(clock::time_point due, const shared_state_base* task) {
    std::stop_token stop;
    if (task != nullptr) {
      try {
        stop = task->stop_token();
      } catch (...) {  // no memory for the stop state: not cut short
      }
    }
    std::mutex m;
    std::condition_variable_any cv;
    std::unique_lock lock(m);
    while (clock::now() < due && !stop.stop_requested()) {
      (void)cv.wait_until(lock, stop, due, [] {
        return false;
      });
    }
  }
};

}  // namespace offload::detail
