#pragma once

/// @file periodic_scheduler.hpp
/// @brief periodic_scheduler: schedules that run a function every period
/// (executor::schedule_every), each run a fresh task of the pool's timer.

#include <memory>
#include <mutex>
#include <type_traits>
#include <utility>
#include <vector>

#include "offload/clock.hpp"
#include "offload/detail/pool/pool.hpp"
#include "offload/detail/saturating_time.hpp"
#include "offload/detail/shared_text.hpp"
#include "offload/detail/task_node.hpp"
#include "offload/detail/thread_annotations.hpp"
#include "offload/lane.hpp"
#include "offload/periodic.hpp"
#include "offload/task_events.hpp"
#include "offload/task_options.hpp"

namespace offload::detail {

/// Thread-safe. Each schedule's control is shared with its handles; the registry keeps weak
/// references, so that shutdown can end every schedule still alive (detach()).
class periodic_scheduler {
 public:
  explicit periodic_scheduler(pool& p) noexcept : m_pool(p) {}
  periodic_scheduler(const periodic_scheduler&) = delete;
  periodic_scheduler& operator=(const periodic_scheduler&) = delete;

  /// Starts a schedule of `fn` every `period` (validated by the caller), first at `first`.
  /// Throws offload::rejected (counted) from outside the pool once shutdown began.
  template <class F>
  periodic_handle start(clock::duration period,
                        clock::duration first,
                        const task_options& options,
                        F&& fn) {
    auto control = std::make_shared<periodic_control>();
    control->unschedule = [this, owner = control.get()] {
      if (task_node* node = m_pool.timers().remove_owned(owner, timer_kind::start))
        m_pool.discard_from_timer(node);
    };
    {
      scoped_lock lock(m_mutex);
      std::erase_if(m_controls, [](const auto& w) {
        return w.expired();
      });
      m_controls.push_back(control);
    }
    auto run = std::make_shared<periodic_run<std::decay_t<F>>>(
        periodic_run<std::decay_t<F>>{std::forward<F>(fn),
                                      period,
                                      m_pool.timers().after(first),
                                      control,
                                      this,
                                      m_pool.resolve_lane(options.lane),
                                      m_pool.names().intern(options.name)});
    arm_next_run(run, true);
    return periodic_handle(std::move(control));
  }

  /// Shutdown: schedules stop; their handles' cancel() no longer reaches the pool.
  void detach() {
    scoped_lock lock(m_mutex);
    for (auto& weak : m_controls) {
      if (auto control = weak.lock()) {
        std::lock_guard c(control->mutex);
        control->cancelled = true;
        control->unschedule = nullptr;
      }
    }
    m_controls.clear();
  }

 private:
  /// A schedule's function and timing; shared by its runs.
  template <class F>
  struct periodic_run {
    F fn;
    clock::duration period;
    clock::time_point due;  // of the run scheduled next
    std::shared_ptr<periodic_control> control;
    periodic_scheduler* scheduler;
    offload::lane lane;
    text_ref name;
  };

  /// One run of a schedule: runs the function, then schedules the next run (even if it threw).
  template <class F>
  struct periodic_task {
    std::shared_ptr<periodic_run<F>> run;
    task_outcome operator()() {
      {
        std::lock_guard lock(run->control->mutex);
        if (run->control->cancelled)
          return task_outcome::cancelled;
        run->control->pending_timer = false;  // this run is on
      }
      struct next_run {
        std::shared_ptr<periodic_run<F>>& run;
        ~next_run() {
          const clock::time_point now = run->scheduler->m_pool.timers().now();
          clock::time_point next = saturating_add(run->due, run->period);
          if (next <= now) {  // missed runs are skipped: the first multiple still ahead
            const auto behind = (now - run->due) / run->period;
            next = saturating_add(run->due, run->period * (behind + 1));
          }
          run->due = next;
          run->scheduler->arm_next_run(run);
          // Counted after the next run is scheduled: runs() == n means run n + 1 is pending.
          std::lock_guard lock(run->control->mutex);
          ++run->control->runs;
        }
      } schedule_next{run};
      run->fn();
      return task_outcome::succeeded;
    }
  };

  /// Puts the schedule's next run into the timer, unless cancelled or shutting down. The `first`
  /// run, scheduled by start() itself, throws what refused it (offload::rejected after shutdown
  /// began, counted as rejected); a later one ends the schedule quietly.
  template <class F>
  void arm_next_run(const std::shared_ptr<periodic_run<F>>& run, bool first = false) {
    std::lock_guard lock(run->control->mutex);
    if (run->control->cancelled || !run->control->unschedule)
      return;
    try {
      task_node* node = make_task(periodic_task<F>{run});
      node->lane = run->lane;
      node->set_name(run->name);  // a copy: the run keeps its own
      m_pool.enqueue_at(node, run->due, run->control.get());
      run->control->pending_timer = true;
    } catch (...) {  // shut down (rejected) or out of memory: the schedule ends
      run->control->cancelled = true;
      if (first)
        throw;
    }
  }

  pool& m_pool;
  annotated_mutex m_mutex;  // start() and detach()
  std::vector<std::weak_ptr<periodic_control>> m_controls OFFLOAD_GUARDED_BY(m_mutex);
};

}  // namespace offload::detail
