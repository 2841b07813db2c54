#pragma once

/// @file submission.hpp
/// @brief pool_submission: how a task enters the pool: a worker's own deque from inside, a lane's
/// injection queue from outside (through the producer gate and, for a bounded lane, admission),
/// or the submitting thread itself (caller_runs).

#include <cstddef>
#include <exception>
#include <new>
#include <utility>

#include "offload/detail/pool/runner.hpp"
#include "offload/detail/task_node.hpp"
#include "offload/detail/worker.hpp"
#include "offload/error.hpp"
#include "offload/lane.hpp"
#include "offload/task_options.hpp"

namespace offload::detail {

/// Writes the submitting thread's counters (a worker's or its producer record's), the queues,
/// m_lanes_used and m_freshness.since_ns; resolves refused or caller-run tasks in m_ledger.
class pool_submission : public pool_runner {
 public:
  using pool_runner::pool_runner;

  /// Queues a task (lane and name from `options`, or inherited); on rejection discards it
  /// (resolving its future) and throws.
  void enqueue(task_node* node, const task_options* options) {
    try {
      worker* w = current_worker();
      if (options != nullptr) {
        node->lane = resolve_lane(options->lane, w);
        node->set_name(m_names.intern(options->name));
      } else {
        node->lane = inherited_lane(w);
      }
      enqueue_or_throw(node, w);
    } catch (...) {
      discard_task(node, discard_reason::rejected);
      throw;
    }
  }

  /// Queues a task in node->lane. w: current_worker(), which the caller looks up (it usually
  /// needs it for the lane too). On rejection throws; the node is then still the caller's.
  void enqueue_or_throw(task_node* node, worker* w) {
    const std::size_t l = index_of(node->lane);
    const offload::lane lane = node->lane;
    mark_lane_used(l);
    if (w != nullptr) {
      // Inside the pool: accepted in every phase before `stopped`, so that tasks spawned while
      // draining run and tasks spawned while cancelling are resolved by the workers' sweep.
      // Never refused for capacity: a fork-join parent must be able to spawn its children.
      const text_ref hook_name = m_hooks.name_for_hook(node);  // the node is not ours once queued
      node->set_enqueued_ns(sample_time(w->timing_tick));
      w->counters.lanes[l].submitted.add();  // before the task is visible: see lane_counters
      try {
        w->deque(l).push(node);  // throws only if growing the deque fails to allocate
      } catch (...) {
        m_ledger.resolve(l, task_outcome::cancelled);  // the caller discards it
        throw;
      }
      note_lanes_refilled();  // before the hook: the stamp must not wait for it
      m_hooks.submitted(hook_name, lane);
      m_idle.notify_one();
      return;
    }
    enqueue_external(node, l);
  }

  /// A continuation of accepted work (then()): never refused for capacity, accepted until the
  /// pool stopped (see scheduler::schedule()).
  void schedule(task_node* node) final {
    worker* w = current_worker();
    node->lane = inherited_lane(w);
    if (w != nullptr) {
      enqueue_or_throw(node, w);
      return;
    }
    const std::size_t l = index_of(node->lane);
    mark_lane_used(l);
    enqueue_external(node, l, true);
  }

  void schedule_in_lane(task_node* node) final {
    if (worker* w = current_worker()) {
      enqueue_or_throw(node, w);
      return;
    }
    const std::size_t l = index_of(node->lane);
    mark_lane_used(l);
    enqueue_external(node, l, true);
  }

  offload::lane running_lane() const noexcept final { return inherited_lane(current_worker()); }

 protected:
  ~pool_submission() = default;

 private:
  /// enqueue_or_throw() from a thread outside the pool.
  /// A `continuation` (a coroutine resuming) belongs to accepted work: it is queued while
  /// draining or cancelling too, and never refused for capacity.
  [[gnu::noinline]] void enqueue_external(task_node* node,
                                          std::size_t l,
                                          bool continuation = false) {
    const offload::lane lane = node->lane;
    producer& p = m_producers.local();
    if (!continuation && m_admission.bounded(l) &&
        m_admission.reserve(p, node, m_phase) == admission::verdict::run_here) {
      run_on_caller(p, node);
      return;
    }
    if (!p.enter(m_phase, continuation)) {
      if (node->holds_lane_slot)
        m_admission.release(l);
      p.refuse_shut_down(l);
    }
    const text_ref hook_name = m_hooks.name_for_hook(node);  // the node is not ours once queued
    node->set_enqueued_ns(sample_time(p.timing_tick));
    p.lanes[l].submitted.add();  // counted before the task is visible: see lane_counters
    bool queued = false;
    try {
      queued = m_inboxes[l].enqueue(p.tokens[l], node);
    } catch (...) {
    }
    if (!queued) {  // out of memory: the caller discards the task, so count it as resolved
      m_ledger.resolve(l, task_outcome::cancelled);
      if (node->holds_lane_slot)
        m_admission.release(l);
      p.leave();
      throw std::bad_alloc();
    }
    p.leave();
    note_lanes_refilled();  // before the hook: the stamp must not wait for it
    m_hooks.submitted(hook_name, lane);
    m_idle.notify_one();
  }

  /// overflow_policy::caller_runs: runs the task here, counted as submitted and resolved. The
  /// producer gate covers only the phase check and the count, never the task: the task may call
  /// anything, stats() and shutdown()'s other steps included. Shutdown waits for tasks running
  /// this way (ledger::wait_for_callers()).
  void run_on_caller(producer& p, task_node* node) {
    const std::size_t l = index_of(node->lane);
    const offload::lane lane = node->lane;
    if (!p.enter(m_phase))
      p.refuse_shut_down(l);
    p.lanes[l].submitted.add();
    m_ledger.caller_began();  // published by leave()
    p.leave();
    struct done_on_caller {
      pool_submission* pool;
      const pool_state* outer = std::exchange(tl_running_on_caller, pool);
      ~done_on_caller() {
        tl_running_on_caller = outer;
        pool->m_ledger.caller_ended();
      }
    } done{this};
    const text_ref name = node->take_name();  // the node is freed once run
    m_hooks.submitted(name, lane);
    attempt_end end = attempt_end::succeeded;
    std::exception_ptr error;
    m_hooks.started(name.text(), lane);
    try {
      end = run_task(node);
    } catch (...) {
      end = attempt_end::failed;
      error = std::current_exception();
      m_hooks.task_error(error);
    }
    if (!is_final(end))
      return;  // not final: it waits in the timer, and a worker runs its next attempt
    const task_outcome outcome = final_outcome(end);
    if (outcome == task_outcome::failed)
      error = take_failure(name.text(), lane, std::move(error));
    m_hooks.finished(name.text(), lane, outcome, error);
    m_ledger.resolve(l, outcome);
    m_ledger.quiet().notify_all();  // a wait_idle() caller may be waiting for this task
  }
};

}  // namespace offload::detail
