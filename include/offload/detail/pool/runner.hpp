#pragma once

/// @file runner.hpp
/// @brief pool_runner: runs one task on a worker with its accounting (taken, outcome, timing,
/// the lane slot, the hooks, a failure's dead letter).

#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <utility>

#include "offload/dead_letter.hpp"
#include "offload/detail/pool/lane_search.hpp"
#include "offload/detail/task_node.hpp"
#include "offload/detail/tick_clock.hpp"
#include "offload/detail/worker.hpp"
#include "offload/lane.hpp"
#include "offload/task_events.hpp"

namespace offload::detail {

/// Writes the running worker's lane counters, current_lane and fiber_depth; gives back lane
/// slots (m_admission); reports failures to m_failures and the hooks.
class pool_runner : public pool_search {
 public:
  using pool_search::pool_search;

 protected:
  ~pool_runner() = default;

  /// Runs (or, while cancelling, discards) one task on worker w, with its accounting: taken and
  /// outcome. A task that is timed, holds a lane slot, or runs while event hooks are set takes
  /// execute_observed(), which adds queue wait, run time, the slot's release and the hooks.
  void execute(worker& w, task_node* node) { execute_inline(w, node); }

  /// execute(), inlined: where waits nest (run_local_task), one call frame fewer per level.
  [[gnu::always_inline]] void execute_inline(worker& w, task_node* node) {
    if (node->timed || node->holds_lane_slot || m_hooks.has_task_hooks()) [[unlikely]] {
      execute_observed(w, node);
      return;
    }
    execute_task<false>(w, node);
  }

  /// A task failed: returns its exception (`thrown` if it escaped the task, a post(), else the
  /// note the task left) and, unless the task recorded its own, adds its dead letter (no kept
  /// callable). Reads the note, not the exception: see failure_note.
  std::exception_ptr take_failure(const std::string* name,
                                  offload::lane lane,
                                  std::exception_ptr thrown) noexcept {
    failure_note note = std::exchange(tl_failure, {});
    const bool recorded = std::exchange(tl_dead_letter_recorded, false);
    if (thrown) {  // escaped the task: nobody else holds it yet, so reading it is safe
      note.error = std::move(thrown);
      try {
        note.text = exception_text(note.error);
        note.type = exception_type_name(note.error);
      } catch (...) {
      }
    }
    if (!recorded && (note.error || !note.text.empty())) {
      try {
        dead_letter d;
        d.name = name ? *name : std::string();
        d.attempts = 1;
        d.lane = lane;
        d.error = std::move(note.text);
        d.exception_type = std::move(note.type);
        d.first_failure = d.last_failure = m_timers.now();
        m_failures.add_dead_letter(std::move(d));
      } catch (...) {
      }
    }
    return std::move(note.error);
  }

 private:
  [[gnu::noinline]] void execute_observed(worker& w, task_node* node) {
    execute_task<true>(w, node);
  }

  template <bool Observed>
  [[gnu::always_inline]] void execute_task(worker& w, task_node* node) {
    const offload::lane task_lane = node->lane;
    const std::size_t l = index_of(task_lane);
    lane_counters& lc = w.counters.lanes[l];
    [[maybe_unused]] std::uint64_t enqueued = 0;  // 0: not sampled for timing
    [[maybe_unused]] std::uint64_t start = 0;
    if constexpr (Observed) {
      if (node->holds_lane_slot)
        m_admission.release(l);
    }
    lc.taken.add();
    if constexpr (Observed) {
      enqueued = node->enqueued_ns();
      if (enqueued != 0) {
        start = tick_clock::now_ns();
        lc.wait.record(start > enqueued ? start - enqueued : 0);
        lc.last_taken_enqueued_ns.store(enqueued, std::memory_order_relaxed);
      }
    }
    ++w.fiber_depth;
    const offload::lane outer_lane = std::exchange(w.current_lane, task_lane);
    // The name's reference leaves the node, which is freed once run (an unnamed task: none).
    const text_ref name = node->take_name();
    attempt_end outcome = attempt_end::cancelled;
    std::exception_ptr error;
    if (cancelling()) [[unlikely]] {
      discard_task(node, discard_reason::shutdown);
    } else {
      if constexpr (Observed)
        m_hooks.started(name.text(), task_lane);
      try {
        outcome = run_task(node);
      } catch (...) {
        outcome = attempt_end::failed;
        error = std::current_exception();
        w.counters.failed.add();
        m_hooks.task_error(error);
      }
    }
    if constexpr (Observed) {
      if (enqueued != 0) {
        const std::uint64_t end = tick_clock::now_ns();  // maybe on another core
        lc.run.record(end > start ? end - start : 0);
      }
    }
    w.current_lane = outer_lane;
    --w.fiber_depth;
    if (!Observed && outcome == attempt_end::succeeded) [[likely]] {
      lc.completed[static_cast<std::size_t>(task_outcome::succeeded)].add();
      return;
    }
    count_outcome(lc, name.text(), task_lane, outcome, std::move(error));
  }

  /// The accounting of every outcome but a success on execute()'s short path: retried
  /// and deferred attempts are not final; a failure takes its dead letter; the finish hooks run;
  /// then the outcome is counted. `error`: the exception that escaped the task, if one did.
  [[gnu::noinline]] void count_outcome(lane_counters& lc,
                                       const std::string* name,
                                       offload::lane lane,
                                       attempt_end end,
                                       std::exception_ptr error) {
    if (!is_final(end))
      return;  // not final, and counted already (count_not_final())
    const task_outcome outcome = final_outcome(end);
    if (outcome == task_outcome::failed)
      error = take_failure(name, lane, std::move(error));
    if (m_hooks.has_finish_hooks())
      m_hooks.finished(name, lane, outcome, error);
    lc.completed[static_cast<std::size_t>(outcome)].add();
  }
};

}  // namespace offload::detail
