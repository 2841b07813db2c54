#pragma once

/// @file timed.hpp
/// @brief pool_timed: tasks that wait in the timer before they are queued (delayed starts,
/// retries, rate-limit waits), small actions the timer runs itself, and the watch that takes a
/// cancelled task's entries back at once.

#include <cstddef>
#include <exception>

#include "offload/clock.hpp"
#include "offload/detail/pool/submission.hpp"
#include "offload/detail/shared_state.hpp"
#include "offload/detail/task_node.hpp"
#include "offload/detail/timer_service.hpp"
#include "offload/detail/worker.hpp"
#include "offload/task_state.hpp"

namespace offload::detail {

/// Writes the submitting thread's counters and m_ledger; puts entries into m_timers and takes
/// them back. The timer thread's side (requeue_from_timer) is in pool_state.
class pool_timed : public pool_submission {
 public:
  using pool_submission::pool_submission;

  /// Counts a delayed task as submitted and puts it into the timer (removable by `owner` if
  /// given). From outside the pool: throws offload::rejected (discarding the node, counted as
  /// rejected) once shutdown began. From a worker (accepted in every phase, as spawned tasks are):
  /// once the timer takes no more starts (shutdown), the task is resolved as interrupted by
  /// shutdown (cancelled), as delayed tasks already waiting are.
  void enqueue_at(task_node* node, clock::time_point due, const void* owner = nullptr) {
    const std::size_t l = index_of(node->lane);
    const offload::lane lane = node->lane;
    const text_ref hook_name = m_hooks.name_for_hook(node);  // the node is not ours once scheduled
    mark_lane_used(l);
    if (worker* w = current_worker()) {
      w->counters.lanes[l].submitted.add();
      bool scheduled = false;
      try {
        scheduled = m_timers.schedule(due, node, timer_kind::start, false, owner);
      } catch (...) {  // no memory (or no timer thread): resolved, and the error propagates
        m_ledger.resolve(l, task_outcome::cancelled);
        discard_task(node, discard_reason::rejected);
        m_ledger.quiet().notify_all();
        throw;
      }
      if (!scheduled) {
        discard_from_timer(node);
        return;
      }
      m_hooks.submitted(hook_name, lane);
      return;
    }
    producer& p = m_producers.local();
    // Through the gate: shutdown stops the timer's starts only after the producer left it, so a
    // submission that was admitted is taken by the timer.
    if (!p.enter(m_phase)) {
      discard_task(node, discard_reason::rejected);
      p.refuse_shut_down(l);
    }
    p.lanes[l].submitted.add();
    bool scheduled = false;
    try {
      scheduled = m_timers.schedule(due, node, timer_kind::start, false, owner);
    } catch (...) {  // no memory (or no timer thread): resolved, and the error propagates
      m_ledger.resolve(l, task_outcome::cancelled);
      p.leave();
      discard_task(node, discard_reason::rejected);
      m_ledger.quiet().notify_all();
      throw;
    }
    p.leave();
    if (!scheduled) {  // not reached: starts stop only after the producer was seen leaving
      discard_from_timer(node);
      return;
    }
    m_hooks.submitted(hook_name, lane);
  }

  /// Runs the small action `node` on the timer thread at `due`, or discards it now if the
  /// timer no longer runs (or cannot take it). Takes it.
  void call_at(clock::time_point due, task_node* node, const void* owner = nullptr) noexcept {
    bool armed = false;
    try {
      armed = m_timers.schedule(due, node, timer_kind::inline_, false, owner);
    } catch (...) {  // no memory or no timer thread
    }
    if (!armed)
      discard_task(node, discard_reason::shutdown);
  }

  void call_after(clock::duration d, task_node* node, const void* owner) final {
    call_at(m_timers.after(d), node, owner);
  }

  bool cancel_call(const void* owner) noexcept final {
    task_node* node = nullptr;
    try {
      node = m_timers.remove_owned(owner, timer_kind::inline_);
    } catch (...) {  // the timer's mutex could not be locked: it stays due
    }
    if (node == nullptr)
      return false;
    discard_task(node, discard_reason::shutdown);
    return true;
  }

  /// Attaches the watch that takes `state`'s timer entries back once it is ready (see
  /// timer_cleanup). Once per state, no later than its first entry is in the timer.
  void watch_timers(shared_state_base* state) noexcept {
    try {
      state->attach(new timer_cleanup(this, state));
    } catch (...) {  // no memory: the entries stay until they are due, as without the watch
    }
  }

  /// A policy task back into the timer (a retry, or a rate-limit wait), owned by its state if it
  /// has one; `first_entry`: that state's entries are not watched yet (see watch_timers()). The
  /// attempt that ends here is counted first (count_not_final()); a task the timer does not take
  /// (shutdown, or no memory) is resolved as cancelled.
  void requeue_attempt(clock::time_point due,
                       task_node* node,
                       shared_state_base* state,
                       bool first_entry,
                       bool retry) noexcept {
    count_not_final(index_of(node->lane), retry);
    // Watched before the entry exists, so that a cancel() landing once it is in the timer takes
    // it back itself, before cancel() returns; one landing earlier is met by [T1] below.
    if (state != nullptr && first_entry)
      watch_timers(state);
    bool scheduled = false;
    // Relaxed: a hint only. The timer itself refuses new entries once shutdown() has stopped its
    // starts, so a stale `running` here ends as !scheduled below, never as a lost task.
    if (m_phase.load(std::memory_order_relaxed) == pool_phase::running) {
      try {
        scheduled = m_timers.schedule(due, node, timer_kind::start, retry, state);
      } catch (...) {
      }
    }
    if (!scheduled) {
      discard_from_timer(node);
      return;
    }
    if (state == nullptr)
      return;
    // [T1] A cancel() may have resolved the state after the attempt gave its claim back and
    // before the entry existed: its timer_cleanup then found nothing to take back. The cancel
    // publishes before its cleanup locks the timer, and this load follows the insertion made
    // under that lock, so either the cleanup finds the entry or this sees the state ready.
    if (state->is_ready()) {
      task_node* again = nullptr;
      try {
        again = m_timers.remove_owned(state, timer_kind::start);
      } catch (...) {  // the timer's mutex could not be locked: the entry stays until due
      }
      if (again != nullptr)
        discard_from_timer(again);
    }
  }

 protected:
  ~pool_timed() = default;

 private:
  /// Takes a future state's timer entries (a delayed start, a retry, a rate-limit wait, its
  /// deadline's expiry) back once the state is ready, so that a cancelled task releases its node
  /// and captures at once and a finished one its expiry.
  struct timer_cleanup final : continuation {
    /// Holds a reference to `s` (the caller owns one, so it may add one).
    timer_cleanup(pool_timed* p, shared_state_base* s) noexcept : pool(p), state(s) {
      state->add_ref();
    }
    ~timer_cleanup() override { state->release(); }
    timer_cleanup(const timer_cleanup&) = delete;
    timer_cleanup& operator=(const timer_cleanup&) = delete;
    void fire() noexcept override { pool->release_timers_of(state); }
    // It only takes entries out of the timer and frees their nodes (the callables' destructors
    // run, which must not block), so it runs where the state became ready, the timer thread
    // included, and frees what a cancelled task held at once.
    bool runs_user_code() const noexcept override { return false; }
    pool_timed* pool;          // outlives the state's timer entries: shutdown resolves them all
    shared_state_base* state;  // the entries' owner key
  };

  void release_timers_of(const shared_state_base* state) noexcept {
    const task_outcome outcome =
        state->state() == task_state::expired ? task_outcome::expired : task_outcome::cancelled;
    try {
      if (task_node* node = m_timers.remove_owned(state, timer_kind::start))
        discard_from_timer(node, outcome);
      if (task_node* node = m_timers.remove_owned(state, timer_kind::inline_))
        discard_task(node, discard_reason::shutdown);
    } catch (...) {  // the timer's mutex could not be locked: the entries stay until due
    }
  }

  /// An attempt that ended without a final outcome (a retry, or a rate-limit deferral), counted on
  /// the thread that ran it: a worker's own counters (which its running() gauge derives from), or,
  /// for a task run by its submitter (caller_runs), the ledger.
  void count_not_final(std::size_t l, bool retry) noexcept {
    if (worker* w = current_worker()) {
      if (retry) {
        w->counters.lanes[l].retried.add();
      } else {
        w->counters.lanes[l].deferred.add();
      }
      return;
    }
    m_ledger.count_taken(l, retry);
  }
};

}  // namespace offload::detail
