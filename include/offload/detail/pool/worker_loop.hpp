#pragma once

/// @file worker_loop.hpp
/// @brief pool_loop: a worker thread's life: its loop (woken fibers, tasks, spinning, parking)
/// and how it ends.

#include <chrono>
#include <cstdint>
#include <thread>

#include "offload/detail/atomic.hpp"
#include "offload/detail/fiber.hpp"
#include "offload/detail/pool/waits.hpp"
#include "offload/detail/task_node.hpp"
#include "offload/detail/tick_clock.hpp"
#include "offload/detail/worker.hpp"

namespace offload::detail {

/// Runs on each worker thread: writes that worker's fields and counters, and m_freshness's park
/// stamp; sleeps on m_idle.
class pool_loop : public pool_waits {
 public:
  using pool_waits::pool_waits;

 protected:
  ~pool_loop() = default;

  /// A worker thread's body: runs the loop (on its first fiber, with fibers on) until the pool
  /// stopped and none of its tasks is suspended.
  void run_worker(worker& w) {
    w.thread_stack = current_thread_stack();
    tl_current_scheduler = this;
    tl_keep_failure_error = m_hooks.has_finish_hooks();  // only failure hooks need the exception
    tl_worker = &w;
    if (w.fibers) {
      struct loop_context {
        pool_loop* self;
        worker* w;
      } ctx{this, &w};
      w.fibers->run(
          [](void* c) {
            auto* lc = static_cast<loop_context*>(c);
            lc->self->worker_loop(*lc->w);
          },
          &ctx);
    } else {
      worker_loop(w);
    }
    tl_worker = nullptr;
    tl_current_scheduler = nullptr;
    w.counters.alive.store(false, std::memory_order_relaxed);
  }

 private:
  static constexpr unsigned k_pause_rounds = 8;  // searches before yielding between them

  /// The worker loop: runs on the worker thread's stack, or (fibers on) on whichever of the
  /// worker's fibers is not waiting. Returns when the pool stopped and no task of this worker
  /// is suspended.
  void worker_loop(worker& w) {
    fiber_runtime* fibers = w.fibers.get();
    for (;;) {
      if (fibers != nullptr) {
        // Woken tasks first (they started already, and finishing them frees their fibers), but
        // not more than 32 in a row while tasks are queued. A task that yielded continues once
        // another task has started since (or at once if the worker finds nothing else to do).
        if ((fibers->has_ready() && fibers->ready_turn() && fibers->resume_ready()) ||
            (fibers->yielded_due() && fibers->resume_yielded())) {
          continue;  // this fiber was idle and took over again from a task that waits
        }
      }
      if (task_node* node = find_task(w)) {
        if (fibers != nullptr)
          fibers->count_start();
        execute(w, node);
        continue;
      }
      if (fibers != nullptr && fibers->has_yielded() && fibers->resume_yielded())
        continue;
      // Out of work: a wait_idle() caller may be waiting for this moment.
      m_ledger.quiet().notify_all();
      if (task_node* found = spin_for_task(w)) {
        if (fibers != nullptr)
          fibers->count_start();
        execute(w, found);
        continue;
      }
      auto key = m_idle.prepare_wait();
      if (fibers != nullptr && fibers->has_ready()) {
        m_idle.cancel_wait();
        continue;
      }
      if (task_node* found = find_task(w)) {
        m_idle.cancel_wait();
        if (fibers != nullptr)
          fibers->count_start();
        execute(w, found);
        continue;
      }
      // Stop only once no task of this worker is suspended: they resume here.
      // acquire; pairs with the seq_cst store of pool_phase::stopped in pool::shutdown().
      if (m_phase.load(std::memory_order_acquire) == pool_phase::stopped && w.suspended() == 0) {
        m_idle.cancel_wait();
        // A make_ready() that published the last woken fiber may still be in its notify.
        while (fibers != nullptr && !fibers->wakers_done()) std::this_thread::yield();
        break;
      }
      w.counters.parks.add();
      m_freshness.parked_ns.store(tick_clock::now_ns(), std::memory_order_relaxed);
      m_idle.commit_wait(key);
    }
  }

  /// Looks for work for up to the spin budget. Returns a task or null.
  task_node* spin_for_task(worker& w) {
    const auto budget = m_options.spin_before_park;
    if (budget <= std::chrono::nanoseconds::zero())
      return nullptr;
    const auto until = std::chrono::steady_clock::now() + budget;
    for (unsigned i = 0;; ++i) {
      // A few short pause loops, then yields: a searching worker must not hold a CPU that the
      // producer (or a waiter woken onto it) needs: with pure pausing, one producer feeding two
      // workers on two cores runs several times slower.
      if (i < k_pause_rounds) {
        cpu_relax_round();
      } else {
        std::this_thread::yield();
      }
      if (task_node* node = find_task(w))
        return node;
      if (m_phase.load(std::memory_order_relaxed) == pool_phase::stopped)
        return nullptr;
      if (w.fibers && w.fibers->has_ready())
        return nullptr;  // a woken task waits for this worker
      if ((i & 7) == 7 && std::chrono::steady_clock::now() >= until)
        return nullptr;
    }
  }
};

}  // namespace offload::detail
