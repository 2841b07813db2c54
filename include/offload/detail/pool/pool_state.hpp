#pragma once

/// @file pool_state.hpp
/// @brief pool_state: what every part of the pool reads and writes: options, phase, lanes, queues,
/// workers, event counts, the ledger, producers, admission, hooks, names and the timer.

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "offload/clock.hpp"
#include "offload/detail/atomic.hpp"
#include "offload/detail/event_count.hpp"
#include "offload/detail/name_table.hpp"
#include "offload/detail/pool/admission.hpp"
#include "offload/detail/pool/hooks.hpp"
#include "offload/detail/pool/ledger.hpp"
#include "offload/detail/pool/phase.hpp"
#include "offload/detail/pool/producers.hpp"
#include "offload/detail/scheduler.hpp"
#include "offload/detail/task_node.hpp"
#include "offload/detail/tick_clock.hpp"
#include "offload/detail/timer_service.hpp"
#include "offload/detail/worker.hpp"
#include "offload/executor_options.hpp"
#include "offload/lane.hpp"
#include "offload/metrics.hpp"
#include "offload/task_events.hpp"

namespace offload::detail {

/// The pool's state, and the small operations on it that several parts share. The parts above
/// it (lane_search, runner, submission, timed, waits, worker_loop, pool) add behaviour and no
/// state; each says which of these members it writes. Readers (telemetry) and the policy layer
/// use the public accessors, which hand out nothing a worker decides on that they could write.
class pool_state : public scheduler {
 public:
  /// `options` validated; its hooks and on_task_error move to the hook dispatcher. `failures`
  /// outlives the pool.
  pool_state(executor_options options, failure_sink& failures)
      : m_hooks(std::move(options.hooks), std::move(options.on_task_error)),
        m_options(std::move(options)),
        m_failures(failures),
        m_timers(
            m_options.clock,
            [this](task_node* node) {
              requeue_from_timer(node);
            },
            this) {}

  pool_state(const pool_state&) = delete;
  pool_state& operator=(const pool_state&) = delete;

  const executor_options& options() const noexcept { return m_options; }
  timer_service& timers() noexcept { return m_timers; }
  const timer_service& timers() const noexcept { return m_timers; }
  name_table& names() noexcept { return m_names; }
  const std::vector<std::unique_ptr<worker>>& workers() const noexcept { return m_workers; }
  const ledger& resolved_outside() const noexcept { return m_ledger; }
  const producer_registry& producers() const noexcept { return m_producers; }
  std::uint64_t started_ns() const noexcept { return m_started_ns; }
  /// The first enqueue after the last park that found everything empty (tick_clock ns).
  std::uint64_t refilled_ns() const noexcept {
    return m_freshness.since_ns.load(std::memory_order_relaxed);
  }
  const std::string& placement_note() const noexcept { return m_placement_note; }

  /// The calling worker, if it belongs to this pool.
  worker* current_worker() const noexcept {
    return tl_current_scheduler == this ? tl_worker : nullptr;
  }

  /// True on this pool's workers and while one of its tasks runs on its submitter.
  bool on_own_thread() const noexcept {
    return tl_current_scheduler == this || tl_running_on_caller == this;
  }

  /// The lane of a task submitted without options by worker w (current_worker(), null outside
  /// the pool): the running task's lane inside a worker, else normal.
  static offload::lane inherited_lane(const worker* w) noexcept {
    return w != nullptr ? w->current_lane : offload::lane::normal;
  }

  /// An option's lane, with lane::inherit resolved for the calling thread (validated already).
  offload::lane resolve_lane(offload::lane l) const noexcept {
    return resolve_lane(l, current_worker());
  }
  static offload::lane resolve_lane(offload::lane l, const worker* w) noexcept {
    return l == offload::lane::inherit ? inherited_lane(w) : l;
  }

  /// Σ completed over every thread. Read before submissions (see quiescent()).
  std::uint64_t completed_total() const noexcept {
    std::uint64_t n = 0;
    for (std::size_t l = 0; l < k_lane_count; ++l) {
      for (std::size_t o = 0; o < k_outcome_count; ++o) {
        n += m_ledger.resolved(l, o);  // [M1]
        for (const auto& w : m_workers) n += w->counters.lanes[l].completed[o].read();
      }
    }
    return n;
  }

  std::uint64_t submitted_total() const {
    std::array<lane_metrics, k_lane_count> lanes{};
    read_submissions(lanes);
    std::uint64_t n = 0;
    for (const auto& l : lanes) n += l.submitted;
    return n;
  }

  /// Adds every thread's submitted and rejected counts into `lanes`.
  void read_submissions(std::array<lane_metrics, k_lane_count>& lanes) const {
    for (const auto& w : m_workers) {
      for (std::size_t l = 0; l < k_lane_count; ++l)
        lanes[l].submitted += w->counters.lanes[l].submitted.read();
    }
    m_producers.add_counts(lanes);
  }

  /// A timed task that will not run (shutdown, no memory to queue it, or its future was
  /// resolved meanwhile): resolved, counted with `outcome`.
  void discard_from_timer(task_node* node,
                          task_outcome outcome = task_outcome::cancelled) noexcept {
    const std::size_t l = index_of(node->lane);
    discard_task(node, discard_reason::shutdown);
    m_ledger.resolve(l, outcome);
    m_ledger.quiet().notify_all();
  }

 protected:
  ~pool_state() = default;

  /// True once shutdown(cancel) began: found tasks are discarded (futures resolved), not run.
  bool cancelling() const noexcept { return m_discard_queued.load(std::memory_order_relaxed); }

  /// Records that lane l has had work, so that workers search it from now on. Searches skip lanes
  /// that were never used: an application that uses only the normal lane pays nothing for the
  /// others. Relaxed: the bit is set before the task is queued and before the wake-up's fence, so
  /// a worker's re-check after prepare_wait() sees both (the same argument as for the task).
  void mark_lane_used(std::size_t l) noexcept {
    const std::uint32_t bit = 1u << l;
    if ((m_lanes_used.load(std::memory_order_relaxed) & bit) == 0)
      m_lanes_used.fetch_or(bit, std::memory_order_relaxed);
  }

  /// After an enqueue: if a worker parked (every lane and deque empty) since the last stamp, the
  /// tasks queued now all came after that park, so health() may date them from now at the
  /// earliest. Costs two loads of a line written only around parks.
  void note_lanes_refilled() noexcept {
    // Relaxed: an estimate. The CAS lets only the first enqueue after a park stamp, so a later
    // producer cannot move the stamp past tasks queued before it.
    std::uint64_t since = m_freshness.since_ns.load(std::memory_order_relaxed);
    if (since < m_freshness.parked_ns.load(std::memory_order_relaxed)) {
      m_freshness.since_ns.compare_exchange_strong(
          since, tick_clock::now_ns(), std::memory_order_relaxed);
    }
  }

  /// The enqueue time of a task chosen for timing (one in timing_sample_interval), else 0.
  std::uint64_t sample_time(std::uint32_t& tick) const noexcept {
    if (++tick < m_options.timing_sample_interval)
      return 0;
    tick = 0;
    return tick_clock::now_ns();
  }

  /// Timer thread: a delayed task or a retry is due; queue it (not counted again as submitted).
  void requeue_from_timer(task_node* node) noexcept {
    if (node->ops->became_ready != nullptr)
      node->ops->became_ready(node);
    const std::size_t l = index_of(node->lane);
    bool queued = false;
    try {
      producer& p = m_producers.local();
      node->set_enqueued_ns(sample_time(p.timing_tick));
      queued = m_inboxes[l].enqueue(p.tokens[l], node);
    } catch (...) {
    }
    if (!queued) {
      discard_from_timer(node);
      return;
    }
    note_lanes_refilled();
    m_idle.notify_one();
  }

  static inline thread_local worker* tl_worker = nullptr;
  /// The pool whose task runs on this (submitting) thread now, by caller_runs; null if none.
  static inline thread_local const pool_state* tl_running_on_caller = nullptr;

  // Written once, before the workers start (the pool's constructor), then read-only.
  hook_dispatcher m_hooks;
  executor_options m_options;  // less hooks and on_task_error (m_hooks owns them)
  std::string m_placement_note;
  failure_sink& m_failures;
  std::uint64_t m_started_ns = 0;
  // Thread-safe parts, each documenting its own writers.
  timer_service m_timers;  // delays, deadlines, retries; its thread starts on first use
  /// When a worker last parked, and the first enqueue after it (tick_clock ns): see
  /// note_lanes_refilled(). Its own line: read by every enqueue, written only around parks.
  struct alignas(k_cache_line) freshness {
    std::atomic<std::uint64_t> parked_ns{0};  // worker_loop
    std::atomic<std::uint64_t> since_ns{0};   // note_lanes_refilled()
  } m_freshness;
  lane_inboxes m_inboxes;  // enqueued by submission and the timer; dequeued by lane_search
  producer_registry m_producers{m_inboxes};
  admission m_admission{m_options.lanes};
  alignas(k_cache_line) std::atomic<std::uint32_t> m_lanes_used{0};  // bit per lane, set once
  std::vector<std::unique_ptr<worker>> m_workers;  // filled by the constructor, then fixed
  event_count m_idle;                              // workers (and helping waiters) sleep here
  ledger m_ledger;
  alignas(k_cache_line) std::atomic<pool_phase> m_phase{pool_phase::running};  // lifecycle only
  std::atomic<bool> m_discard_queued{false};  // set once by shutdown(cancel)
  std::mutex m_shutdown_mutex;                // serializes shutdown()
  name_table m_names;  // task names in use (a thread's first submission of a name locks)
};

}  // namespace offload::detail
