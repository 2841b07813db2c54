#pragma once

/// @file pool.hpp
/// @brief pool: the scheduler core: starts the workers (placement, fibers), and owns the order of
/// their shutdown and of waiting for idle. Knows nothing of policies or readers.

#include <cstdio>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "offload/detail/atomic.hpp"
#include "offload/detail/fiber.hpp"
#include "offload/detail/pool/worker_loop.hpp"
#include "offload/detail/task_node.hpp"
#include "offload/detail/tick_clock.hpp"
#include "offload/detail/topology.hpp"
#include "offload/detail/worker.hpp"
#include "offload/executor_options.hpp"

namespace offload::detail {

/// Thread-safe, except that shutdown() must not run on one of its workers or tasks.
class pool final : public pool_loop {
 public:
  /// Starts the workers. `options` validated. Throws std::system_error when a worker's first
  /// fiber stack cannot be mapped or a thread cannot start (nothing is left running).
  pool(executor_options options, failure_sink& failures, offload::executor* owner)
      : pool_loop(std::move(options), failures) {
    m_owner = owner;
    tick_clock::warm_up();
    // Registers the process for membarrier now (once per process; with threads already running
    // the kernel waits for an RCU grace period, which no task should pay for).
    (void)asymmetric_barrier::expedited();
    m_started_ns = tick_clock::now_ns();
    const unsigned n = m_options.resolved_workers();
    placement_plan plan = plan_placement(m_options.placement, n);
    if (plan.fell_back)
      std::fprintf(stderr, "%s\n", plan.note.c_str());
    m_placement_note = std::move(plan.note);
    m_workers.reserve(n);
    for (unsigned i = 0; i < n; ++i) {
      m_workers.push_back(std::make_unique<worker>(
          i, static_cast<std::int64_t>(m_options.deque_capacity), m_inboxes));
      worker& w = *m_workers.back();
      w.counters.alive.store(true, std::memory_order_relaxed);
      w.picks_to_guard = m_options.starvation_guard;
      if (m_options.fibers) {
        w.fibers = std::make_unique<fiber_runtime>(m_options.fiber_stack_size, m_idle);
        try {
          w.fibers->prepare();  // the first fiber's guarded stack: fails here, not in the thread
        } catch (const std::system_error& e) {
          throw std::system_error(e.code(),
                                  "offload::executor: worker " + std::to_string(i) + ": " +
                                      e.what() +
                                      " (lower executor_options.fiber_stack_size, or set "
                                      "executor_options.fibers = false)");
        }
      }
      if (i < plan.steal_order.size())
        w.steal_order = std::move(plan.steal_order[i]);
    }
    try {
      for (auto& w : m_workers) {
        std::vector<unsigned> cpus;
        if (w->index < plan.worker_cpus.size())
          cpus = std::move(plan.worker_cpus[w->index]);
        w->thread = std::thread([this, raw = w.get(), cpus = std::move(cpus)] {
          std::string error;
          if (!pin_current_thread(cpus, &error))
            std::fprintf(stderr, "%s (the worker runs unpinned)\n", error.c_str());
          run_worker(*raw);
        });
      }
    } catch (...) {
      shutdown(shutdown_mode::cancel, [] {});
      throw;
    }
  }

  /// Stops the workers if shutdown() did not (a caller whose later construction step threw).
  ~pool() {
    // Relaxed: the destroying thread ran shutdown() itself (which wrote the phase), or none ran.
    if (m_phase.load(std::memory_order_relaxed) != pool_phase::stopped)
      shutdown(shutdown_mode::cancel, [] {});
  }

  unsigned worker_count() const noexcept { return static_cast<unsigned>(m_workers.size()); }

  /// Stops accepting submissions from outside the pool, calls `admission_closed()` (with no
  /// submission from outside in flight), then drains (runs everything accepted) or cancels
  /// (resolves what is queued or waits in the timer), and joins the workers. Idempotent: later
  /// calls wait for the first, and do nothing.
  template <class AdmissionClosed>
  void shutdown(shutdown_mode mode, AdmissionClosed&& admission_closed) {
    std::lock_guard lock(m_shutdown_mutex);
    // Relaxed: the phase is written only here, under m_shutdown_mutex.
    if (m_phase.load(std::memory_order_relaxed) == pool_phase::stopped)
      return;
    // [X1] seq_cst; pairs with the producer's seq_cst store of its busy flag [X2]: either the
    // producer sees the new phase and rejects, or we see its flag below and wait for its enqueue.
    if (mode == shutdown_mode::cancel)
      m_discard_queued.store(true, std::memory_order_relaxed);
    m_phase.store(mode == shutdown_mode::drain ? pool_phase::draining : pool_phase::cancelling,
                  std::memory_order_seq_cst);
    m_admission.wake_all();  // blocked submitters give up
    m_producers.wait_out();  // [X3]
    admission_closed();
    // Delayed tasks and retries still waiting are resolved now (cancelled: interrupted by
    // shutdown) rather than waited for; later retries are refused (requeue_attempt()).
    // Tasks sleeping in this_task::sleep_for() keep their timer until the workers are gone.
    m_timers.stop_starts([this](task_node* node) {
      discard_from_timer(node);
    });
    m_ledger.quiet().notify_all();
    if (mode == shutdown_mode::drain)
      wait_idle();
    if (mode == shutdown_mode::cancel) {
      // Sleeping tasks wake now (this_task::sleep_for returns early), so that cancel does not
      // wait out their sleeps.
      m_timers.stop([this](task_node* node) {
        discard_from_timer(node);
      });
    }
    m_phase.store(pool_phase::stopped, std::memory_order_seq_cst);
    m_idle.notify_all();
    for (auto& w : m_workers) {
      if (w->thread.joinable())
        w->thread.join();
    }
    m_timers.stop([this](task_node* node) {
      discard_from_timer(node);
    });
    discard_leftovers();          // workers are gone: this thread may act as every deque's owner
    m_ledger.wait_for_callers();  // tasks running on submitting threads (caller_runs) finish
  }

  /// Blocks until nothing is queued or running; returns at once if idle. Not from one of this
  /// pool's tasks (it would wait for itself).
  void wait_idle() {
    for (int i = 0; i < k_idle_spin; ++i) {
      if (quiescent())
        return;
      cpu_relax();
    }
    event_count& quiet = m_ledger.quiet();
    for (;;) {
      auto key = quiet.prepare_wait();
      if (quiescent()) {
        quiet.cancel_wait();
        return;
      }
      quiet.commit_wait(key);
    }
  }

 private:
  static constexpr int k_idle_spin = 1000;  // quiescence checks before wait_idle() sleeps

  /// Σ completed == Σ submitted, read completed-first: counters only grow and a task is counted
  /// as submitted before it can complete, so equality means idle at some instant during the call.
  bool quiescent() const {
    const std::uint64_t completed = completed_total();
    return completed == submitted_total();
  }

  /// After the workers joined: resolves whatever is still queued (cancel mode, or a race).
  void discard_leftovers() {
    auto discard = [this](task_node* node) {
      const std::size_t l = index_of(node->lane);
      if (node->holds_lane_slot)
        m_admission.release(l);
      discard_task(node, discard_reason::shutdown);
      m_ledger.resolve(l, task_outcome::cancelled);
    };
    for (std::size_t l = 0; l < k_lane_count; ++l) {
      for (auto& w : m_workers) {
        while (auto node = w->deque(l).pop()) discard(*node);
      }
      task_node* node = nullptr;
      while (m_inboxes[l].try_dequeue(node)) discard(node);
    }
    m_ledger.quiet().notify_all();
  }
};

}  // namespace offload::detail
