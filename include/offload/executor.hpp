#pragma once

/// @file executor.hpp
/// @brief offload::executor: a work-stealing thread pool with lock-free submission, futures and
/// bounded-spin parking.

#include <algorithm>
#include <atomic>
#include <bit>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include <concurrentqueue/concurrentqueue.h>

#include "offload/clock.hpp"
#include "offload/dead_letter.hpp"
#include "offload/detail/atomic.hpp"
#include "offload/detail/bind.hpp"
#include "offload/detail/event_count.hpp"
#include "offload/detail/name_table.hpp"
#include "offload/detail/policy_task.hpp"
#include "offload/detail/saturating_time.hpp"
#include "offload/detail/scheduler.hpp"
#include "offload/detail/sleep_wake.hpp"
#include "offload/detail/task.hpp"
#include "offload/detail/tick_clock.hpp"
#include "offload/detail/timer_service.hpp"
#include "offload/detail/topology.hpp"
#include "offload/detail/worker.hpp"
#include "offload/error.hpp"
#include "offload/executor_options.hpp"
#include "offload/executor_stats.hpp"
#include "offload/future.hpp"
#include "offload/health.hpp"
#include "offload/lane.hpp"
#include "offload/metrics.hpp"
#include "offload/periodic.hpp"
#include "offload/task.hpp"
#include "offload/task_events.hpp"
#include "offload/task_options.hpp"
#include "offload/task_state.hpp"
#include "offload/this_task.hpp"

namespace offload {

/// A pool of worker threads that runs tasks.
///
/// Path of a task: submit() from outside the pool puts it on its lane's lock-free injection queue
/// (moodycamel ConcurrentQueue, with a producer token per submitting thread); submit() from
/// inside a worker pushes it on that worker's Chase–Lev deque for the lane. For each lane from
/// critical down, a worker pops its own deque LIFO, takes from the injection queue (checked first
/// on every k_inbox_interval-th search, so it is never starved by local work), and steals FIFO
/// from random victims; every starvation_guard-th task it serves a lower lane first. An idle
/// worker searches for executor_options::spin_before_park, then sleeps on an event count; a
/// submission makes a syscall only if a worker sleeps.
///
/// Guarantees (docs/guarantees.md): every accepted task runs exactly once or its future is
/// resolved with a reason; a task's exception reaches its future unchanged and never terminates
/// the process; waiting inside a worker helps, so it never deadlocks the pool; submissions after
/// shutdown() began throw offload::rejected. Destruction drains.
/// Thread-safe, except that shutdown() and the destructor must not run on one of its workers.
class executor final : private detail::scheduler, private detail::policy_host {
 public:
  /// Starts the workers. Throws std::invalid_argument for invalid options.
  explicit executor(executor_options options = {})
      : m_options((options.validate(), std::move(options))),
        m_uid(next_uid()),
        m_timers(
            m_options.clock,
            [this](detail::task_node* node) {
              requeue_from_timer(node);
            },
            static_cast<detail::scheduler*>(this)) {
    detail::tick_clock::warm_up();
    // Registers the process for membarrier now (once per process; with threads already running
    // the kernel waits for an RCU grace period, which no task should pay for).
    (void)detail::asymmetric_barrier::expedited();
    m_started_ns = detail::tick_clock::now_ns();
    for (std::size_t l = 0; l < k_lane_count; ++l)
      m_lane_limits[l].bounded = m_options.lanes[l].capacity != lane_options::unbounded;
    const unsigned n = m_options.resolved_workers();
    detail::placement_plan plan = detail::plan_placement(m_options.placement, n);
    if (plan.fell_back)
      std::fprintf(stderr, "%s\n", plan.note.c_str());
    m_placement_note = std::move(plan.note);
    m_workers.reserve(n);
    for (unsigned i = 0; i < n; ++i) {
      m_workers.push_back(std::make_unique<detail::worker>(
          i, static_cast<std::int64_t>(m_options.deque_capacity), m_inboxes));
      detail::worker& w = *m_workers.back();
      w.counters.alive.store(true, std::memory_order_relaxed);
      w.picks_to_guard = m_options.starvation_guard;
      if (m_options.fibers) {
        w.fibers = std::make_unique<detail::fiber_runtime>(m_options.fiber_stack_size, m_idle);
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
          if (!detail::pin_current_thread(cpus, &error))
            std::fprintf(stderr, "%s (the worker runs unpinned)\n", error.c_str());
          run_worker(*raw);
        });
      }
    } catch (...) {
      shutdown(shutdown_mode::cancel);
      throw;
    }
  }

  executor(const executor&) = delete;
  executor& operator=(const executor&) = delete;

  /// Drains: runs everything accepted, then joins the workers.
  ~executor() {
    if (detail::tl_current_scheduler == this || tl_running_on_caller == this) {
      std::fputs("offload: an executor was destroyed by one of its own tasks\n", stderr);
      std::terminate();
    }
    shutdown(shutdown_mode::drain);
  }

  /// Runs `fn(args...)` on a worker; returns its future. Arguments are decay-copied, as by
  /// std::async. Throws offload::rejected after shutdown began. Thread-safe.
  /// `fn` may take a std::stop_token first (`fn(token, args...)`): it is stopped when the future
  /// is cancelled, including while the task runs. A coroutine (fn returns task<T>) gives a
  /// future<T>.
  /// A task submitted this way from inside a worker keeps the submitting task's lane; from
  /// outside the pool it goes to lane::normal.
  template <class F, class... Args>
  requires(!std::is_same_v<std::remove_cvref_t<F>, task_options>) auto submit(F&& fn,
                                                                              Args&&... args)
      -> future<detail::call_result_t<F, Args...>> {
    return submit_with(nullptr, std::forward<F>(fn), std::forward<Args>(args)...);
  }

  /// As submit(fn, args...), with a lane and a name. When the lane is bounded and full, its
  /// overflow policy applies: offload::rejected, a bounded wait, or running the task on the
  /// calling thread before submit() returns (its future is then already ready).
  ///
  /// With a retry policy, a delay, a deadline or a key, the task takes the policy path: invalid
  /// options throw std::invalid_argument naming the field; retries wait in the executor's timer;
  /// after the last attempt the task is dead-lettered and its future throws the last exception;
  /// a task not started by its deadline never runs and its future throws offload::expired.
  template <class F, class... Args>
  auto submit(const task_options& options, F&& fn, Args&&... args)
      -> future<detail::call_result_t<F, Args...>> {
    options.validate();
    if (options.needs_policy())
      return submit_policy<true>(options, std::forward<F>(fn), std::forward<Args>(args)...);
    return submit_with(&options, std::forward<F>(fn), std::forward<Args>(args)...);
  }

  /// Runs `fn(args...)` on a worker and drops its result. An exception it throws is counted
  /// (executor_stats::failed_detached) and passed to executor_options::on_task_error.
  /// Throws offload::rejected after shutdown began. Thread-safe.
  template <class F, class... Args>
  requires(!std::is_same_v<std::remove_cvref_t<F>, task_options>) void post(F&& fn,
                                                                            Args&&... args) {
    enqueue(detail::make_task(detail::bind(std::forward<F>(fn), std::forward<Args>(args)...)),
            nullptr);
  }

  /// As post(fn, args...), with a lane and a name (see submit(options, ...)).
  template <class F, class... Args>
  void post(const task_options& options, F&& fn, Args&&... args) {
    options.validate();
    if (options.needs_policy()) {
      (void)submit_policy<false>(options, std::forward<F>(fn), std::forward<Args>(args)...);
      return;
    }
    enqueue(detail::make_task(detail::bind(std::forward<F>(fn), std::forward<Args>(args)...)),
            &options);
  }

  /// An awaitable for task<T> coroutines: `co_await ex.schedule(lane)` continues the coroutine
  /// as a task of this executor in `lane`, and its later resumptions stay in that lane (from
  /// anywhere: a coroutine run by sync_wait() on another thread moves onto the executor). A
  /// resumption is part of accepted work: it is queued while the executor drains or cancels;
  /// once it has stopped, the coroutine continues inline. A coroutine moved onto an executor this
  /// way from outside a submitted task must end before the executor is destroyed.
  /// Throws std::invalid_argument for a value that is not a lane (lane::inherit is the calling
  /// task's lane).
  auto schedule(offload::lane lane = offload::lane::normal) {
    if (lane == offload::lane::inherit)
      lane = inherited_lane(current_worker());
    if (!is_lane(lane)) {
      throw std::invalid_argument("offload::executor::schedule: not a lane: " +
                                  std::to_string(static_cast<unsigned>(lane)));
    }
    return schedule_awaiter{this, lane};
  }

  /// Runs `fn()` every `period`, first after options.delay (or one period if none), in
  /// options.lane under options.name, until the handle's cancel() or shutdown. Runs never
  /// overlap: the next run is scheduled when the current one ends, at the first multiple of
  /// `period` (from the first due time) that is still ahead; runs missed meanwhile are skipped,
  /// never run back to back. A run that throws is a failed task (dead letter, on_task_error) and
  /// the schedule goes on. Each run counts as a submitted task; while a schedule is active,
  /// wait_idle() waits for its next run. Throws std::invalid_argument for a period <= 0 or
  /// options it does not support (retry, deadline, key, rate), and, from outside the pool,
  /// offload::rejected after shutdown began.
  template <class F>
  periodic_handle schedule_every(clock::duration period, const task_options& options, F&& fn) {
    if (period <= clock::duration::zero()) {
      throw std::invalid_argument("offload::executor::schedule_every: period must be > 0, got " +
                                  std::to_string(period.count()) + " ticks");
    }
    options.validate();
    if (options.retry.max_attempts > 1 || options.retry.retry_if || options.deadline ||
        !options.key.empty() || options.rate) {
      throw std::invalid_argument(
          "offload::executor::schedule_every: task_options.retry, deadline, key and rate are not "
          "supported for periodic tasks (each run is a fresh task: retry inside the function)");
    }
    auto control = std::make_shared<detail::periodic_control>();
    control->unschedule = [this, owner = control.get()] {
      if (detail::task_node* node = m_timers.remove_owned(owner, detail::timer_kind::start))
        discard_from_timer(node);
    };
    {
      std::lock_guard lock(m_periodics_mutex);
      std::erase_if(m_periodics, [](const auto& w) {
        return w.expired();
      });
      m_periodics.push_back(control);
    }
    auto run = std::make_shared<periodic_run<std::decay_t<F>>>(
        periodic_run<std::decay_t<F>>{std::forward<F>(fn),
                                      period,
                                      clock::time_point{},
                                      control,
                                      this,
                                      resolve_lane(options.lane),
                                      m_names.intern(options.name)});
    const clock::duration first = options.delay > clock::duration::zero() ? options.delay : period;
    run->due = m_timers.after(first);
    schedule_periodic_run(run, true);
    return periodic_handle(std::move(control));
  }

  /// The dead-letter store, oldest first (a snapshot). Bounded by executor_options::dead_letters.
  std::vector<dead_letter> dead_letters() const {
    std::lock_guard lock(m_dead_mutex);
    prune_dead_letters(m_timers.now());
    return {m_dead.begin(), m_dead.end()};
  }

  /// Runs a dead-lettered task again as a new submission (fire-and-forget, attempts reset, same
  /// lane, name, key and retry policy) and removes its record. Returns false if the record is
  /// gone (evicted or requeued already) or its callable could not be kept (not copyable). A
  /// requeue that is refused (offload::rejected after shutdown began, or no memory) throws and
  /// keeps the record.
  bool requeue(const dead_letter& record) {
    dead_letter taken;
    {
      std::lock_guard lock(m_dead_mutex);
      auto it = std::find_if(m_dead.begin(), m_dead.end(), [&](const dead_letter& d) {
        return d.id == record.id;
      });
      if (it == m_dead.end() || !it->replay)
        return false;
      m_dead_bytes -= footprint(*it);
      taken = std::move(*it);  // out of the store while it is submitted: requeued at most once
      m_dead.erase(it);
    }
    try {
      task_options o{
          .lane = taken.lane, .retry = taken.replay->retry, .key = taken.key, .name = taken.name};
      post(o, taken.replay->callable());
    } catch (...) {
      std::lock_guard lock(m_dead_mutex);
      auto at = std::find_if(m_dead.begin(), m_dead.end(), [&](const dead_letter& d) {
        return d.id > taken.id;
      });
      m_dead_bytes += footprint(taken);
      m_dead.insert(at, std::move(taken));  // back in its place (the store is ordered by id)
      throw;
    }
    return true;
  }

  /// Blocks until nothing is queued or running; returns at once if idle. Everything the
  /// finished tasks did happens-before the return. Must not be called from one of this
  /// executor's tasks (it would wait for itself): throws std::logic_error. Thread-safe.
  void wait_idle() {
    if (detail::tl_current_scheduler == this || tl_running_on_caller == this) {
      throw std::logic_error("offload::executor::wait_idle() called from one of its own tasks");
    }
    for (int i = 0; i < k_idle_spin; ++i) {
      if (quiescent())
        return;
      detail::cpu_relax();
    }
    for (;;) {
      auto key = m_quiet.prepare_wait();
      if (quiescent()) {
        m_quiet.cancel_wait();
        return;
      }
      m_quiet.commit_wait(key);
    }
  }

  /// Stops accepting submissions from outside the pool and stops the workers. drain: runs every
  /// accepted task (and what they spawn) first. cancel: resolves queued tasks' futures with
  /// offload::cancelled and lets running tasks finish. Idempotent; later calls wait for the first.
  /// Must not be called from one of this executor's tasks: throws std::logic_error.
  void shutdown(shutdown_mode mode = shutdown_mode::drain) {
    if (mode != shutdown_mode::drain && mode != shutdown_mode::cancel) {
      throw std::invalid_argument(
          "offload::executor::shutdown: mode must be drain or cancel, got " +
          std::to_string(static_cast<int>(mode)));
    }
    if (detail::tl_current_scheduler == this || tl_running_on_caller == this) {
      throw std::logic_error("offload::executor::shutdown() called from one of its own tasks");
    }
    std::lock_guard lock(m_shutdown_mutex);
    if (m_phase.load(std::memory_order_relaxed) == phase::stopped)
      return;
    // [X1] seq_cst; pairs with the producer's seq_cst store of its busy flag [X2]: either the
    // producer sees the new phase and rejects, or we see its flag below and wait for its enqueue.
    if (mode == shutdown_mode::cancel)
      m_discard_queued.store(true, std::memory_order_relaxed);
    m_phase.store(mode == shutdown_mode::drain ? phase::draining : phase::cancelling,
                  std::memory_order_seq_cst);
    for (auto& limit : m_lane_limits) limit.room.notify_all();  // blocked submitters give up
    {
      std::lock_guard producers(m_producers_mutex);
      for (auto& p : m_producers) {
        // [X3] seq_cst load; pairs with [X2]; the flag's release clear [X4] publishes the enqueue.
        while (p->busy.load(std::memory_order_seq_cst)) std::this_thread::yield();
      }
    }
    // Delayed tasks and retries still waiting are resolved now (cancelled: interrupted by
    // shutdown) rather than waited for; later retries are refused (schedule_retry).
    // Tasks sleeping in this_task::sleep_for() keep their timer until the workers are gone.
    detach_periodics();
    m_timers.stop_starts([this](detail::task_node* node) {
      discard_from_timer(node);
    });
    m_quiet.notify_all();
    if (mode == shutdown_mode::drain)
      wait_idle();
    if (mode == shutdown_mode::cancel) {
      // Sleeping tasks wake now (this_task::sleep_for returns early), so that cancel does not
      // wait out their sleeps.
      m_timers.stop([this](detail::task_node* node) {
        discard_from_timer(node);
      });
    }
    m_phase.store(phase::stopped, std::memory_order_seq_cst);
    m_idle.notify_all();
    for (auto& w : m_workers) {
      if (w->thread.joinable())
        w->thread.join();
    }
    m_timers.stop([this](detail::task_node* node) {
      discard_from_timer(node);
    });
    discard_leftovers();  // workers are gone: this thread may act as every deque's owner
    wait_for_callers();   // tasks running on submitting threads (caller_runs) finish
  }

  unsigned worker_count() const noexcept { return static_cast<unsigned>(m_workers.size()); }

  /// What executor_options::placement did: e.g. "offload: placement compact (hwloc): 2 workers
  /// pinned to 2 PUs on 2 of 2 cores", or why it fell back. Empty for placement::none.
  const std::string& placement_note() const noexcept { return m_placement_note; }

  /// Counters summed over all threads at the time of the call (not an atomic snapshot).
  executor_stats stats() const {
    executor_stats s;
    // Completions are read before submissions (see quiescent()), so completed <= submitted.
    s.completed = completed_total();
    for (const auto& w : m_workers) {
      s.failed_detached += w->counters.failed.read();
      s.steals += w->counters.steals.read();
      s.parks += w->counters.parks.read();
      if (w->fibers) {
        s.fibers += w->fibers->fiber_count();
        s.suspended += w->fibers->suspended();
      }
    }
    s.fiber_stack_bytes = s.fibers * m_options.fiber_stack_size;
    s.submitted = submitted_total();
    return s;
  }

  /// Per-lane counters, gauges and histograms, and per-worker figures, summed from per-thread
  /// counters now (no lock on the workers' path; not an atomic snapshot: see lane_metrics).
  metrics_snapshot metrics() const {
    metrics_snapshot m;
    const std::uint64_t now = detail::tick_clock::now_ns();
    std::array<std::uint64_t, k_lane_count> resolved_outside{};
    std::array<std::uint64_t, k_lane_count> completed_by_workers{};
    std::array<std::uint64_t, k_lane_count> taken{};
    // Read order: outcomes (completed, resolved outside, retried), then the timer's counts, then
    // taken, then submitted: each flow is read after the flows that follow it in a task's life,
    // so the derived gauges stay within the tasks in flight during the call (and are clamped).
    for (std::size_t l = 0; l < k_lane_count; ++l) {
      lane_metrics& lm = m.lanes[l];
      for (std::size_t o = 0; o < k_outcome_count; ++o) {
        // [M1] acquire; pairs with the release increments in resolve_outside() [M2].
        const std::uint64_t outside = m_resolved_outside[l][o].load(std::memory_order_acquire);
        resolved_outside[l] += outside;
        lm.completed[o] += outside;
        for (const auto& w : m_workers) {
          const std::uint64_t c = w->counters.lanes[l].completed[o].read();
          completed_by_workers[l] += c;
          lm.completed[o] += c;
        }
      }
      lm.retries = m_retried_outside[l].load(std::memory_order_relaxed);
      // [M1] acquire; pairs with [M3] in count_not_final().
      taken[l] = m_taken_outside[l].load(std::memory_order_acquire);
      for (const auto& w : m_workers) lm.retries += w->counters.lanes[l].retried.read();
    }
    const auto timers = m_timers.read_counts();
    std::array<std::uint64_t, k_lane_count> running_now{};
    for (const auto& w : m_workers) {
      for (std::size_t l = 0; l < k_lane_count; ++l)
        running_now[l] += w->counters.lanes[l].running();
    }
    for (std::size_t l = 0; l < k_lane_count; ++l) {
      lane_metrics& lm = m.lanes[l];
      for (const auto& w : m_workers) {
        const auto& lc = w->counters.lanes[l];
        taken[l] += lc.taken.read();
        std::uint64_t sum_ns = 0;
        lc.wait.add_to(lm.wait.buckets, sum_ns);
        lm.wait.sum_seconds += static_cast<double>(sum_ns) * 1e-9;
        sum_ns = 0;
        lc.run.add_to(lm.run.buckets, sum_ns);
        lm.run.sum_seconds += static_cast<double>(sum_ns) * 1e-9;
      }
      for (auto b : lm.wait.buckets) lm.wait.count += b;
      for (auto b : lm.run.buckets) lm.run.count += b;
    }
    read_submissions(m.lanes);
    auto clamp = [](std::int64_t v) {
      return v > 0 ? static_cast<std::uint64_t>(v) : std::uint64_t{0};
    };
    for (std::size_t l = 0; l < k_lane_count; ++l) {
      lane_metrics& lm = m.lanes[l];
      const auto i = [](std::uint64_t v) {
        return static_cast<std::int64_t>(v);
      };
      lm.scheduled = clamp(i(timers.in_delay[l]) + i(timers.in_retry[l]) - i(timers.fired[l]) -
                           i(timers.dropped[l]));
      // Tasks in progress now, counted where they run (bounded by the workers and the waits that
      // nest on them): per worker, taken - (completed + retried + deferred).
      lm.running = running_now[l];
      lm.queued = clamp(i(lm.submitted) - i(timers.in_delay[l]) + i(timers.fired[l]) - i(taken[l]) -
                        (i(resolved_outside[l]) - i(timers.dropped[l])));
    }
    {
      std::lock_guard lock(m_dead_mutex);
      m.dead_letters = m_dead.size();
    }
    const std::vector<double> running_for = observe_workers(now);
    for (const auto& w : m_workers) {
      worker_metrics wm;
      wm.index = w->index;
      wm.tasks_run = w->counters.finished();
      wm.steals = w->counters.steals.read();
      wm.parks = w->counters.parks.read();
      wm.heartbeat_age_seconds = running_for[w->index];
      m.workers.push_back(wm);
    }
    return m;
  }

  /// Workers alive and stuck, and per lane the queued count and the oldest queued task's age;
  /// computed by the calling thread from the workers' heartbeats.
  health_report health() const {
    health_report h;
    const std::uint64_t now = detail::tick_clock::now_ns();
    const double stuck_after = std::chrono::duration<double>(m_options.stuck_after).count();
    const std::vector<double> running_for = observe_workers(now);
    for (const auto& w : m_workers) {
      worker_health wh;
      wh.index = w->index;
      wh.alive = w->counters.alive.load(std::memory_order_relaxed);
      wh.running_for_seconds = running_for[w->index];
      wh.stuck = wh.alive && wh.running_for_seconds > stuck_after;
      h.workers_alive += wh.alive ? 1 : 0;
      h.workers_stuck += wh.stuck ? 1 : 0;
      h.workers.push_back(wh);
    }
    const metrics_snapshot m = metrics();
    for (std::size_t l = 0; l < k_lane_count; ++l) {
      h.queued[l] = m.lanes[l].queued;
      if (h.queued[l] == 0)
        continue;
      std::uint64_t newest_taken = 0;
      for (const auto& w : m_workers) {
        newest_taken =
            std::max(newest_taken,
                     w->counters.lanes[l].last_taken_enqueued_ns.load(std::memory_order_relaxed));
      }
      // The oldest task queued now came after the newest one taken (FIFO per lane), and after
      // the last time a worker parked with everything empty (if a task arrived since).
      const std::uint64_t since = std::max(
          {newest_taken, m_started_ns, m_freshness.since_ns.load(std::memory_order_relaxed)});
      h.oldest_queued_age_seconds[l] = now > since ? static_cast<double>(now - since) * 1e-9 : 0.0;
    }
    return h;
  }

 private:
  friend class task_group;  // enqueues prebuilt task nodes

  enum class phase : std::uint32_t { running, draining, cancelling, stopped };

  static constexpr int k_idle_spin = 1000;
  static constexpr std::uint32_t k_inbox_interval = 61;  // searches between inbox-first checks
  static constexpr int k_steal_attempts = 2;             // retries of a victim on a lost race
  static constexpr unsigned k_pause_rounds = 8;          // searches before yielding between them

  /// A thread that submits from outside the pool: its producer tokens and counters.
  struct producer {
    explicit producer(detail::lane_inboxes& q)
        : tokens{moodycamel::ProducerToken(q[0]),
                 moodycamel::ProducerToken(q[1]),
                 moodycamel::ProducerToken(q[2]),
                 moodycamel::ProducerToken(q[3])} {}
    std::array<moodycamel::ProducerToken, k_lane_count> tokens;  // used by its thread only
    std::atomic<bool> busy{false};  // set while its thread is inside enqueue()
    struct lane_counts {
      detail::owned_counter submitted;
      detail::owned_counter rejected;
    };
    std::array<lane_counts, k_lane_count> lanes;  // written by its thread only
    std::uint32_t timing_tick = 0;                // its thread only: submissions, for sampling
    std::thread::id thread;
  };

  /// Capacity bookkeeping of one bounded lane (unused for unbounded lanes).
  struct lane_limit {
    bool bounded = false;
    alignas(detail::k_cache_line) std::atomic<std::uint64_t> waiting{0};  // slots held
    detail::event_count room;  // blocked submitters wait here for a slot
  };

  /// What executor::schedule(lane) returns.
  struct schedule_awaiter {
    executor* ex;
    offload::lane lane;
    bool await_ready() const noexcept { return false; }
    template <class P>
    void await_suspend(std::coroutine_handle<P> h) const noexcept {
      if constexpr (std::is_base_of_v<detail::task_promise_base, P>)
        h.promise().lane = lane;  // later resumptions stay in this lane
      detail::resume_point where = detail::resume_point::of(h);
      where.sched = ex;
      where.lane = lane;
      where.resume(h);  // as a task of `ex`; inline if `ex` has stopped
    }
    void await_resume() const noexcept {}
  };

  /// Lane, name and capacity decisions for one submission.
  template <class F, class... Args>
  auto submit_with(const task_options* options, F&& fn, Args&&... args)
      -> future<detail::call_result_t<F, Args...>> {
    using R = detail::call_result_t<F, Args...>;
    auto call = detail::bind(std::forward<F>(fn), std::forward<Args>(args)...);
    detail::state_ref<R> state(detail::shared_state<R>::create(this));
    detail::state_ref<R> for_caller(state.get());  // the second of the two initial references
    detail::task_node* node = detail::make_task(
        detail::producing_task<R, decltype(call)>{std::move(state), std::move(call)});
    enqueue(node, options);
    return detail::make_future(std::move(for_caller));
  }

  static std::uint64_t next_uid() noexcept {
    static std::atomic<std::uint64_t> uid{1};
    return uid.fetch_add(1, std::memory_order_relaxed);
  }

  /// The calling worker, if it belongs to this executor.
  detail::worker* current_worker() const noexcept {
    return detail::tl_current_scheduler == this ? tl_worker : nullptr;
  }

  /// A continuation of accepted work (then()): never refused for capacity, accepted until the
  /// executor stopped (see scheduler::schedule()).
  void schedule(detail::task_node* node) override {
    detail::worker* w = current_worker();
    node->lane = inherited_lane(w);
    if (w != nullptr) {
      enqueue_or_throw(node, w);
      return;
    }
    const std::size_t l = index_of(node->lane);
    mark_lane_used(l);
    enqueue_external(node, l, true);
  }

  void schedule_in_lane(detail::task_node* node) override {
    if (detail::worker* w = current_worker()) {
      enqueue_or_throw(node, w);
      return;
    }
    const std::size_t l = index_of(node->lane);
    mark_lane_used(l);
    enqueue_external(node, l, true);
  }

  offload::lane running_lane() const noexcept override { return inherited_lane(current_worker()); }

  void call_after(clock::duration d, detail::task_node* node, const void* owner) override {
    call_at(m_timers.after(d), node, owner);
  }

  bool cancel_call(const void* owner) noexcept override {
    detail::task_node* node = nullptr;
    try {
      node = m_timers.remove_owned(owner, detail::timer_kind::inline_);
    } catch (...) {  // the timer's mutex could not be locked: it stays due
    }
    if (node == nullptr)
      return false;
    detail::discard_task(node, detail::discard_reason::shutdown);
    return true;
  }

  /// Runs the small action `node` on the timer thread at `due`, or discards it now if the
  /// timer no longer runs (or cannot take it). Takes it.
  void call_at(clock::time_point due,
               detail::task_node* node,
               const void* owner = nullptr) noexcept {
    bool armed = false;
    try {
      armed = m_timers.schedule(due, node, detail::timer_kind::inline_, false, owner);
    } catch (...) {  // no memory or no timer thread
    }
    if (!armed)
      detail::discard_task(node, detail::discard_reason::shutdown);
  }

  /// Takes a future state's timer entries (a delayed start, a retry, a rate-limit wait, its
  /// deadline's expiry) back once the state is ready, so that a cancelled task releases its node
  /// and captures at once and a finished one its expiry. Attached once per state, after its
  /// first entry is scheduled.
  struct timer_cleanup final : detail::continuation {
    /// Holds a reference to `s` (the caller owns one, so it may add one).
    timer_cleanup(executor* e, detail::shared_state_base* s) noexcept : ex(e), state(s) {
      state->add_ref();
    }
    ~timer_cleanup() override { state->release(); }
    timer_cleanup(const timer_cleanup&) = delete;
    timer_cleanup& operator=(const timer_cleanup&) = delete;
    void fire() noexcept override { ex->release_timers_of(state); }
    // It only takes entries out of the timer and frees their nodes (the callables' destructors
    // run, which must not block), so it runs where the state became ready, the timer thread
    // included, and frees what a cancelled task held at once.
    bool runs_user_code() const noexcept override { return false; }
    executor* ex;  // outlives the state's timer entries: shutdown resolves them all
    detail::shared_state_base* state;  // the entries' owner key
  };

  void watch_timers(detail::shared_state_base* state) noexcept {
    try {
      state->attach(new timer_cleanup(this, state));
    } catch (...) {  // no memory: the entries stay until they are due, as without the watch
    }
  }

  void release_timers_of(const detail::shared_state_base* state) noexcept {
    const task_outcome outcome =
        state->state() == task_state::expired ? task_outcome::expired : task_outcome::cancelled;
    try {
      if (detail::task_node* node = m_timers.remove_owned(state, detail::timer_kind::start))
        discard_from_timer(node, outcome);
      if (detail::task_node* node = m_timers.remove_owned(state, detail::timer_kind::inline_))
        detail::discard_task(node, detail::discard_reason::shutdown);
    } catch (...) {  // the timer's mutex could not be locked: the entries stay until due
    }
  }

  /// Queues a task (lane and name from `options`, or inherited); on rejection discards it
  /// (resolving its future) and throws.
  void enqueue(detail::task_node* node, const task_options* options) {
    try {
      detail::worker* w = current_worker();
      if (options != nullptr) {
        node->lane = resolve_lane(options->lane, w);
        node->set_name(m_names.intern(options->name));
      } else {
        node->lane = inherited_lane(w);
      }
      enqueue_or_throw(node, w);
    } catch (...) {
      detail::discard_task(node, detail::discard_reason::rejected);
      throw;
    }
  }

  /// A periodic schedule's function and timing; shared by its runs.
  template <class F>
  struct periodic_run {
    F fn;
    clock::duration period;
    clock::time_point due;  // of the run scheduled next
    std::shared_ptr<detail::periodic_control> control;
    executor* ex;
    offload::lane lane;
    detail::text_ref name;
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
          const clock::time_point now = run->ex->m_timers.now();
          clock::time_point next = detail::saturating_add(run->due, run->period);
          if (next <= now) {  // missed runs are skipped: the first multiple still ahead
            const auto behind = (now - run->due) / run->period;
            next = detail::saturating_add(run->due, run->period * (behind + 1));
          }
          run->due = next;
          run->ex->schedule_periodic_run(run);
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
  /// run, scheduled by schedule_every() itself, throws what refused it (offload::rejected after
  /// shutdown began, counted as rejected); a later one ends the schedule quietly.
  template <class F>
  void schedule_periodic_run(const std::shared_ptr<periodic_run<F>>& run, bool first = false) {
    std::lock_guard lock(run->control->mutex);
    if (run->control->cancelled || !run->control->unschedule)
      return;
    try {
      detail::task_node* node = detail::make_task(periodic_task<F>{run});
      node->lane = run->lane;
      node->set_name(run->name);  // a copy: the run keeps its own
      schedule_delayed(node, run->due, run->control.get());
      run->control->pending_timer = true;
    } catch (...) {  // shut down (rejected) or out of memory: the schedule ends
      run->control->cancelled = true;
      if (first)
        throw;
    }
  }

  /// Resolves a de-duplicated follower from its leader's result (copy), unless cancelled.
  template <class R>
  struct copy_result final : detail::continuation {
    copy_result(detail::state_ref<R> from, detail::state_ref<R> to)
        : source(std::move(from)), target(std::move(to)) {}
    void fire() noexcept override {
      if (!target->try_claim())
        return;  // the follower was cancelled
      if (std::exception_ptr e = source->exception()) {
        target->set_exception(std::move(e), source->state());
        return;
      }
      try {
        if constexpr (std::is_void_v<R>) {
          target->set_value();
        } else {
          target->set_value(source->peek());
        }
      } catch (...) {
        target->set_exception(std::current_exception());
      }
    }
    bool runs_user_code() const noexcept override {
      return !source->exception();  // a copy of the result runs R's copy constructor
    }
    detail::state_ref<R> source;
    detail::state_ref<R> target;
  };

  /// At the deadline: resolves a task that has not started with offload::expired.
  template <class R>
  struct expire_action {
    detail::state_ref<R> state;
    detail::text_ref key;  // released when the expiry takes effect (null: none)
    std::uint64_t ticket;
    executor* ex;
    task_outcome operator()() {
      if (state->try_claim()) {
        ex->release_key(key.get(), ticket);
        state->store_exception(std::make_exception_ptr(offload::expired(
                                   "offload: task expired: its deadline passed before it started")),
                               task_state::expired);
        state->publish();
      }
      return task_outcome::expired;
    }
  };

  /// What makes two shareable policy plans the same (see plan_for()).
  struct plan_signature {
    unsigned max_attempts;
    offload::backoff backoff;
    offload::jitter jitter;
    offload::lane lane;
    clock::duration base_delay;
    clock::duration max_delay;
    const detail::shared_text* name;  // the record's identity: an interned plan holds it
    double rate_per_second;
    double rate_burst;
    bool operator==(const plan_signature&) const = default;
    struct hash {
      std::size_t operator()(const plan_signature& s) const noexcept {
        std::size_t h = std::hash<const detail::shared_text*>{}(s.name);
        for (const std::size_t v : {std::size_t{s.max_attempts},
                                    static_cast<std::size_t>(s.backoff),
                                    static_cast<std::size_t>(s.jitter),
                                    static_cast<std::size_t>(s.lane),
                                    static_cast<std::size_t>(s.base_delay.count()),
                                    static_cast<std::size_t>(s.max_delay.count()),
                                    std::hash<double>{}(s.rate_per_second),
                                    std::hash<double>{}(s.rate_burst)})
          h = h * 1000003u ^ v;
        return h;
      }
    };
  };
  /// Beyond this many distinct shareable policies, each submission gets a plan of its own.
  static constexpr std::size_t k_max_interned_plans = 4096;

  /// A key's leader: the internal state every submission of the key follows. The table's entry
  /// holds the key's record (its text is the table's key) until the task ends.
  struct key_entry {
    detail::text_ref key;
    std::uint64_t ticket = 0;                     // distinguishes successive holders of one key
    detail::shared_state_base* leader = nullptr;  // holds one reference
    const std::type_info* result_type = nullptr;
    std::function<void()> release_leader;
    std::size_t followers = 0;  // submitters' futures not cancelled; at 0 the task is cancelled
  };

  /// A keyed submission's future: reports the task's state, and cancels the task when the last
  /// submitter still interested cancels.
  struct key_follow_link final : detail::follow_link {
    key_follow_link(executor* e,
                    detail::shared_state_base* l,
                    detail::text_ref k,
                    std::uint64_t t) noexcept
        : ex(e), leader(l), key(std::move(k)), ticket(t) {
      leader->add_ref();
    }
    ~key_follow_link() override { leader->release(); }
    task_state leader_state() const noexcept override {
      // The leader's result is published before it is copied to the followers: until this
      // follower has its copy (or is cancelled), its state is not final.
      const task_state s = leader->state();
      return is_terminal(s) ? task_state::running : s;
    }
    void follower_cancelled() noexcept override {
      // The last submitter cancelled: the key is free, and the task is cancelled.
      if (ex->erase_key(key.get(), ticket, true))
        leader->cancel("offload: task cancelled: every submitter of its key cancelled");
    }
    executor* ex;  // outlives the link while the follower can still be cancelled (not ready)
    detail::shared_state_base* leader;  // holds one reference
    detail::text_ref key;
    std::uint64_t ticket;
  };

  /// The policy path of submit()/post(): validates, builds a policy_task, and queues it now, at
  /// its delay (timer), with an expiry timer for a deadline; de-duplicates by key.
  template <bool WithFuture, class F, class... Args>
  auto submit_policy(const task_options& o, F&& fn, Args&&... args)
      -> future<detail::call_result_t<F, Args...>> {
    using R = detail::call_result_t<F, Args...>;
    o.validate();
    const offload::lane lane = resolve_lane(o.lane);
    auto call = detail::bind<true>(std::forward<F>(fn), std::forward<Args>(args)...);
    using call_t = decltype(call);
    if (only_delayed(o)) {
      // A delay and nothing else: a plain task waits in the timer (no plan to allocate, so a
      // pending delayed post costs its pooled node and a heap entry).
      detail::task_node* node = nullptr;
      future<R> result;
      detail::shared_state_base* owner = nullptr;
      if constexpr (WithFuture) {
        detail::state_ref<R> state(detail::shared_state<R>::create(this));
        result = detail::make_future(detail::state_ref<R>(state.get()));
        state->set_state(task_state::scheduled);
        owner = state.get();
        node =
            detail::make_task(detail::producing_task<R, call_t>{std::move(state), std::move(call)});
      } else {
        node = detail::make_task(std::move(call));
      }
      node->lane = lane;
      node->set_name(m_names.intern(o.name));
      schedule_delayed(node, m_timers.after(o.delay), owner);
      if (owner != nullptr)
        watch_timers(owner);
      return result;
    }
    // Sharing one task's result between the submissions of a key copies it to each.
    constexpr bool k_shareable =
        !WithFuture || std::is_void_v<R> || std::is_copy_constructible_v<R>;
    if constexpr (!k_shareable) {
      if (!o.key.empty()) {
        throw std::invalid_argument(
            "offload::task_options.key needs a copyable result type: every submission of the key "
            "gets a copy of the one task's result");
      }
    }
    detail::text_ref key;  // the key's record; null: no key
    detail::state_ref<R> state;
    future<R> result;
    std::unique_lock key_lock(m_keys_mutex, std::defer_lock);
    std::uint64_t ticket = 0;
    if constexpr (k_shareable) {
      if (!o.key.empty()) {
        key_lock.lock();
        if (auto it = m_keys.find(std::string_view(o.key)); it != m_keys.end()) {
          key_entry& held = it->second;
          if constexpr (!WithFuture) {
            // post() of a key that is pending: the pending task covers it, so it counts as a
            // submitter that never cancels (the task runs even if every future is cancelled).
            if (held.leader != nullptr)
              ++held.followers;
            return result;
          } else {
            if (held.leader == nullptr) {
              throw std::invalid_argument(
                  "offload::task_options.key '" + o.key +
                  "' is pending as a post(), which has no result to share; submit() it later");
            }
            if (*held.result_type != typeid(R)) {
              throw std::invalid_argument("offload::task_options.key '" + o.key +
                                          "' is pending with a different result type");
            }
            auto* leader = static_cast<detail::shared_state<R>*>(held.leader);
            future<R> joined = follow(leader, held.key, held.ticket);
            ++held.followers;  // after follow(), which may throw
            return joined;
          }
        }
        key = detail::text_ref::adopt(new detail::shared_text(o.key));
      }
      if constexpr (WithFuture) {
        // States start with two references: the task's (`state`) and a second one, which goes
        // to the caller's future, or for a key to the key table (the caller gets a follower).
        state = detail::state_ref<R>(detail::shared_state<R>::create(this));
        if (key) {
          ticket = ++m_next_key_ticket;
          result = follow(state.get(), key, ticket);
          m_keys.emplace(std::string_view(*key.text()),
                         key_entry{key,
                                   ticket,
                                   state.get(),
                                   &typeid(R),
                                   [raw = state.get()] {
                                     detail::state_ref<R> drop(raw);  // adopts, then releases
                                   },
                                   1});
        } else {
          result = detail::make_future(detail::state_ref<R>(state.get()));
        }
      } else if (key) {
        ticket = ++m_next_key_ticket;
        m_keys.emplace(std::string_view(*key.text()),
                       key_entry{key, ticket, nullptr, &typeid(void), {}});
      }
    } else {
      state = detail::state_ref<R>(detail::shared_state<R>::create(this));
      result = detail::make_future(detail::state_ref<R>(state.get()));
    }
    if (key_lock.owns_lock())
      key_lock.unlock();
    if (state && o.delay > clock::duration::zero())
      state->set_state(task_state::scheduled);
    detail::plan_ptr plan = plan_for(o, lane, key, ticket);
    detail::text_ref name = plan->name;
    detail::state_ref<R> expiry = (state && o.deadline) ? state.copy() : detail::state_ref<R>();
    detail::shared_state_base* const owner = state.get();
    // Watched at once when it enters the timer now; a policy task watches on its first retry.
    const bool watched = owner != nullptr && (o.deadline || o.delay > clock::duration::zero());
    detail::task_node* node = nullptr;
    try {
      node = detail::make_task(detail::policy_task<R, call_t>{
          std::move(state), std::move(call), std::move(plan), 1, false, {}, watched});
    } catch (...) {
      release_key(key.get(), ticket);
      throw;
    }
    node->lane = lane;
    node->set_name(std::move(name));
    if (expiry) {
      detail::task_node* timer =
          detail::make_task(expire_action<R>{std::move(expiry), std::move(key), ticket, this});
      timer->lane = lane;
      bool armed = false;
      try {
        armed = m_timers.schedule(*o.deadline, timer, detail::timer_kind::inline_, false, owner);
      } catch (...) {
      }
      if (!armed)
        detail::discard_task(timer, detail::discard_reason::shutdown);
    }
    struct watch_after {  // the watch is attached once the entries are in the timer, or not
      executor* ex;
      detail::shared_state_base* state;
      ~watch_after() {
        if (state != nullptr)
          ex->watch_timers(state);
      }
    } watch_guard{this, watched ? owner : nullptr};
    if (o.delay > clock::duration::zero()) {
      schedule_delayed(node, m_timers.after(o.delay), owner);
    } else {
      try {
        enqueue_or_throw(node, current_worker());
      } catch (...) {
        detail::discard_task(node, detail::discard_reason::rejected);
        throw;
      }
    }
    return result;
  }

  static bool only_delayed(const task_options& o) noexcept {
    return o.retry.max_attempts == 1 && !o.retry.retry_if && !o.deadline && o.key.empty() &&
           !o.rate && o.delay > clock::duration::zero();
  }

  /// A new future that receives a copy of `leader`'s result: the future of a submission of the
  /// key held by ticket `ticket`. The caller holds m_keys_mutex and counts the follower.
  template <class R>
  future<R> follow(detail::shared_state<R>* leader,
                   const detail::text_ref& key,
                   std::uint64_t ticket) {
    leader->add_ref();
    detail::state_ref<R> source(leader);
    detail::state_ref<R> target(detail::follower_state<R>::create(
        this, std::make_unique<key_follow_link>(this, leader, key, ticket)));
    detail::state_ref<R> for_caller(target.get());
    leader->attach(new copy_result<R>(std::move(source), std::move(target)));
    return detail::make_future(std::move(for_caller));
  }

  /// Counts a delayed task as submitted and puts it into the timer (removable by `owner` if
  /// given). From outside the pool: throws offload::rejected (discarding the node, counted as
  /// rejected) once shutdown began. From a worker (accepted in every phase, as spawned tasks are):
  /// once the timer takes no more starts (shutdown), the task is resolved as interrupted by
  /// shutdown (cancelled), as delayed tasks already waiting are.
  void schedule_delayed(detail::task_node* node,
                        clock::time_point due,
                        const void* owner = nullptr) {
    const std::size_t l = index_of(node->lane);
    const offload::lane lane = node->lane;
    const detail::text_ref hook_name = name_for_hook(node);  // the node is not ours once scheduled
    mark_lane_used(l);
    if (detail::worker* w = current_worker()) {
      w->counters.lanes[l].submitted.add();
      bool scheduled = false;
      try {
        scheduled = m_timers.schedule(due, node, detail::timer_kind::start, false, owner);
      } catch (...) {  // no memory (or no timer thread): resolved, and the error propagates
        resolve_outside(l, task_outcome::cancelled);
        detail::discard_task(node, detail::discard_reason::rejected);
        m_quiet.notify_all();
        throw;
      }
      if (!scheduled) {
        discard_from_timer(node);
        return;
      }
      notify_submitted(hook_name, lane);
      return;
    }
    producer& p = local_producer();
    // [X2] seq_cst; pairs with [X1]/[X3] in shutdown(): shutdown stops the timer's starts only
    // after this flag is clear, so a submission that saw `running` is taken by the timer.
    p.busy.store(true, std::memory_order_seq_cst);
    if (m_phase.load(std::memory_order_seq_cst) != phase::running) {
      p.busy.store(false, std::memory_order_relaxed);
      p.lanes[l].rejected.add();
      detail::discard_task(node, detail::discard_reason::rejected);
      throw rejected("offload: executor is shut down; submission rejected");
    }
    p.lanes[l].submitted.add();
    bool scheduled = false;
    try {
      scheduled = m_timers.schedule(due, node, detail::timer_kind::start, false, owner);
    } catch (...) {  // no memory (or no timer thread): resolved, and the error propagates
      resolve_outside(l, task_outcome::cancelled);
      p.busy.store(false, std::memory_order_release);
      detail::discard_task(node, detail::discard_reason::rejected);
      m_quiet.notify_all();
      throw;
    }
    // [X4] release; pairs with [X3]: shutdown sees the entry once it sees the flag clear.
    p.busy.store(false, std::memory_order_release);
    if (!scheduled) {  // not reached: starts stop only after this flag was seen clear
      discard_from_timer(node);
      return;
    }
    notify_submitted(hook_name, lane);
  }

  /// Timer thread: a delayed task or a retry is due; queue it (not counted again as submitted).
  void requeue_from_timer(detail::task_node* node) noexcept {
    if (node->ops->became_ready != nullptr)
      node->ops->became_ready(node);
    const std::size_t l = index_of(node->lane);
    bool queued = false;
    try {
      producer& p = local_producer();
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

  /// A timed task that will not run (shutdown, no memory to queue it, or its future was
  /// resolved meanwhile): resolved, counted with `outcome`.
  void discard_from_timer(detail::task_node* node,
                          task_outcome outcome = task_outcome::cancelled) noexcept {
    const std::size_t l = index_of(node->lane);
    detail::discard_task(node, detail::discard_reason::shutdown);
    resolve_outside(l, outcome);
    m_quiet.notify_all();
  }

  // policy_host
  clock::time_point timer_now() const noexcept override { return m_timers.now(); }

  void schedule_retry(clock::time_point due,
                      detail::task_node* node,
                      detail::shared_state_base* state,
                      bool first_entry) noexcept override {
    schedule_again(due, node, state, first_entry, true);
  }

  /// A policy task back into the timer (a retry, or a rate-limit wait), owned by its state if it
  /// has one; `first_entry`: that state's entries are not watched yet (see watch_timers()). The
  /// attempt that ends here is counted first (count_not_final()); a task the timer does not take
  /// (shutdown, or no memory) is resolved as cancelled.
  void schedule_again(clock::time_point due,
                      detail::task_node* node,
                      detail::shared_state_base* state,
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
    if (m_phase.load(std::memory_order_relaxed) == phase::running) {
      try {
        scheduled = m_timers.schedule(due, node, detail::timer_kind::start, retry, state);
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
      detail::task_node* again = nullptr;
      try {
        again = m_timers.remove_owned(state, detail::timer_kind::start);
      } catch (...) {  // the timer's mutex could not be locked: the entry stays until due
      }
      if (again != nullptr)
        discard_from_timer(again);
    }
  }

  /// An attempt that ended without a final outcome (a retry, or a rate-limit deferral), counted on
  /// the thread that ran it: a worker's own counters (which its running() gauge derives from), or,
  /// for a task run by its submitter (caller_runs), the retries of tasks resolved outside.
  void count_not_final(std::size_t l, bool retry) noexcept {
    if (detail::worker* w = current_worker()) {
      if (retry) {
        w->counters.lanes[l].retried.add();
      } else {
        w->counters.lanes[l].deferred.add();
      }
      return;
    }
    // [M3] release; pairs with [M1]'s acquire reads in metrics(): counted before the node is
    // visible to the timer, so a reader that sees the retry fire sees this attempt too.
    m_taken_outside[l].fetch_add(1, std::memory_order_release);
    if (retry)
      m_retried_outside[l].fetch_add(1, std::memory_order_relaxed);
  }

  double next_uniform() noexcept override {
    thread_local detail::xorshift32 rng(
        static_cast<std::uint32_t>(std::hash<std::thread::id>{}(std::this_thread::get_id()) | 1u));
    return static_cast<double>(rng.next()) / 4294967295.0;
  }

  void add_dead_letter(dead_letter d) noexcept override {
    try {
      std::optional<dead_letter> for_hook;
      {
        std::lock_guard lock(m_dead_mutex);
        d.id = ++m_next_dead_id;
        if (m_options.on_dead_letter)
          for_hook = d;
        if (m_options.dead_letters.max_count > 0) {
          m_dead_bytes += footprint(d);
          m_dead.push_back(std::move(d));
        }
        prune_dead_letters(m_timers.now());
      }
      if (for_hook) {
        try {
          m_options.on_dead_letter(*for_hook);
        } catch (...) {  // the hook must not throw; the record is kept regardless
        }
      }
    } catch (...) {  // out of memory: the failure still reaches the future and the counters
    }
  }

  std::optional<clock::time_point> take_token(const detail::task_plan& plan) override {
    const std::string bucket_key =
        plan.name ? "name:" + *plan.name.text() : "lane:" + std::string(to_string(plan.lane));
    const clock::time_point now = m_timers.now();
    std::lock_guard lock(m_buckets_mutex);
    auto [it, inserted] = m_buckets.try_emplace(bucket_key);
    token_bucket& b = it->second;
    if (inserted) {
      b.per_second = plan.rate_per_second;
      b.burst = plan.rate_burst;
      b.tokens = b.burst;
      b.refilled = now;
    }
    const double elapsed = std::chrono::duration<double>(now - b.refilled).count();
    b.tokens = std::min(b.burst, b.tokens + std::max(0.0, elapsed) * b.per_second);
    b.refilled = now;
    b.tokens -= 1;  // taken now, or reserved: a negative balance is the queue of reservations
    if (b.tokens >= 0)
      return std::nullopt;
    return detail::saturating_add(now,
                                  detail::saturating_cast<clock::duration>(
                                      std::chrono::duration<double>(-b.tokens / b.per_second)));
  }

  void schedule_wait(clock::time_point due,
                     detail::task_node* node,
                     detail::shared_state_base* state,
                     bool first_entry) noexcept override {
    schedule_again(due, node, state, first_entry, false);
  }

  void release_key(const detail::shared_text* key, std::uint64_t ticket) noexcept override {
    (void)erase_key(key, ticket, false);
  }

  /// Erases the key's holding `ticket` and drops the table's reference to its leader; with
  /// `last_follower`, only if this takes its follower count to 0. True if the key was erased.
  bool erase_key(const detail::shared_text* key,
                 std::uint64_t ticket,
                 bool last_follower) noexcept {
    if (key == nullptr)
      return false;
    std::function<void()> release;
    detail::text_ref held;  // the entry's reference to the key, dropped outside the lock
    {
      std::lock_guard lock(m_keys_mutex);
      auto it = m_keys.find(std::string_view(key->text));
      if (it == m_keys.end() || it->second.ticket != ticket)
        return false;  // released already, and perhaps held by a later submission now
      if (last_follower && --it->second.followers != 0)
        return false;  // another submitter still waits for the task
      release = std::move(it->second.release_leader);
      held = std::move(it->second.key);
      m_keys.erase(it);
    }
    if (release)
      release();
    return true;
  }

  /// Shutdown: schedules stop; their handles' cancel() no longer reaches this executor.
  void detach_periodics() {
    std::lock_guard lock(m_periodics_mutex);
    for (auto& weak : m_periodics) {
      if (auto control = weak.lock()) {
        std::lock_guard c(control->mutex);
        control->cancelled = true;
        control->unschedule = nullptr;
      }
    }
    m_periodics.clear();
  }

  /// Evicts records past max_count or max_age, oldest first. Caller holds m_dead_mutex.
  void prune_dead_letters(clock::time_point now) const {
    while (!m_dead.empty() &&
           (m_dead.size() > m_options.dead_letters.max_count ||
            m_dead_bytes > m_options.dead_letters.max_bytes ||
            now - m_dead.front().last_failure > m_options.dead_letters.max_age)) {
      m_dead_bytes -= footprint(m_dead.front());
      m_dead.pop_front();
    }
  }

  /// What one record counts against dead_letter_options::max_bytes.
  static std::size_t footprint(const dead_letter& d) noexcept {
    auto text = [](const std::string& s) {
      return s.capacity() > 15 ? s.capacity() + 1 : 0;  // beyond the small-string buffer
    };
    return sizeof(dead_letter) + text(d.name) + text(d.key) + text(d.error) +
           text(d.exception_type) + (d.replay ? d.replay->footprint() : 0);
  }

  /// A task failed: returns its exception (`thrown` if it escaped the task, a post(), else the
  /// note the task left) and, unless the task recorded its own, adds its dead letter (no kept
  /// callable). Reads the note, not the exception: see detail::failure_note.
  std::exception_ptr take_failure(const std::string* name,
                                  offload::lane lane,
                                  std::exception_ptr thrown) noexcept {
    detail::failure_note note = std::exchange(detail::tl_failure, {});
    const bool recorded = std::exchange(detail::tl_dead_letter_recorded, false);
    if (thrown) {  // escaped the task: nobody else holds it yet, so reading it is safe
      note.error = std::move(thrown);
      try {
        note.text = detail::exception_text(note.error);
        note.type = detail::exception_type_name(note.error);
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
        add_dead_letter(std::move(d));
      } catch (...) {
      }
    }
    return std::move(note.error);
  }

  /// The lane of a task submitted without options by worker w (current_worker(), null outside
  /// the pool): the running task's lane inside a worker, else normal.
  static offload::lane inherited_lane(const detail::worker* w) noexcept {
    return w != nullptr ? w->current_lane : offload::lane::normal;
  }

  /// An option's lane, with lane::inherit resolved for the calling thread (validated already).
  offload::lane resolve_lane(offload::lane l) const noexcept {
    return resolve_lane(l, current_worker());
  }
  static offload::lane resolve_lane(offload::lane l, const detail::worker* w) noexcept {
    return l == offload::lane::inherit ? inherited_lane(w) : l;
  }

  /// The plan of a policy submission: the interned one for its policy, name, lane and rate limit,
  /// or a plan of its own when it has a deadline, a key or a retry_if predicate (or when the table
  /// is full: k_max_interned_plans distinct policies).
  detail::plan_ptr plan_for(const task_options& o,
                            offload::lane lane,
                            const detail::text_ref& key,
                            std::uint64_t ticket) {
    const detail::text_ref name = m_names.intern(o.name);
    const auto fill = [&](detail::task_plan& p) {
      p.retry = o.retry;
      if (o.deadline)
        p.deadline = *o.deadline;
      p.name = name;
      p.key = key;
      p.key_ticket = ticket;
      p.lane = lane;
      p.host = this;
      if (o.rate) {
        p.rate_per_second = static_cast<float>(o.rate->per_second);
        p.rate_burst = static_cast<float>(o.rate->burst);
      }
    };
    if (o.deadline || key || o.retry.retry_if)
      return detail::make_plan(fill);
    const plan_signature sig{o.retry.max_attempts,
                             o.retry.backoff,
                             o.retry.jitter,
                             lane,
                             o.retry.base_delay,
                             o.retry.max_delay,
                             name.get(),
                             o.rate ? o.rate->per_second : 0.0,
                             o.rate ? o.rate->burst : 0.0};
    struct cache_entry {
      std::uint64_t uid = 0;
      plan_signature sig;
      const detail::task_plan* plan = nullptr;
    };
    thread_local cache_entry last;
    if (last.uid == m_uid && last.sig == sig)
      return detail::plan_ptr(last.plan);
    std::lock_guard lock(m_plans_mutex);
    auto it = m_plans.find(sig);
    if (it == m_plans.end()) {
      if (m_plans.size() >= k_max_interned_plans)
        return detail::make_plan(fill);
      auto shared = std::make_unique<detail::task_plan>();
      fill(*shared);  // home stays null: interned
      it = m_plans.emplace(sig, std::move(shared)).first;
    }
    last = {m_uid, sig, it->second.get()};
    return detail::plan_ptr(it->second.get());
  }

  /// w: current_worker(), which the caller looks up (it usually needs it for the lane too).
  void enqueue_or_throw(detail::task_node* node, detail::worker* w) {
    const std::size_t l = index_of(node->lane);
    const offload::lane lane = node->lane;
    mark_lane_used(l);
    if (w != nullptr) {
      // Inside the pool: accepted in every phase before `stopped`, so that tasks spawned while
      // draining run and tasks spawned while cancelling are resolved by the workers' sweep.
      // Never refused for capacity: a fork-join parent must be able to spawn its children.
      const detail::text_ref hook_name = name_for_hook(node);  // the node is not ours once queued
      node->set_enqueued_ns(sample_time(w->timing_tick));
      w->counters.lanes[l].submitted.add();  // before the task is visible: see lane_counters
      try {
        w->deque(l).push(node);  // throws only if growing the deque fails to allocate
      } catch (...) {
        resolve_outside(l, task_outcome::cancelled);  // the caller discards it
        throw;
      }
      note_lanes_refilled();  // before the hook: the stamp must not wait for it
      notify_submitted(hook_name, lane);
      m_idle.notify_one();
      return;
    }
    enqueue_external(node, l);
  }

  /// enqueue_or_throw() from a thread outside the pool.
  /// A `continuation` (a coroutine resuming) belongs to accepted work: it is queued while
  /// draining or cancelling too, and never refused for capacity.
  [[gnu::noinline]] void enqueue_external(detail::task_node* node,
                                          std::size_t l,
                                          bool continuation = false) {
    const offload::lane lane = node->lane;
    producer& p = local_producer();
    if (!continuation && m_lane_limits[l].bounded && !reserve_slot(p, node))
      return;  // ran on this thread (caller_runs)
    // [X2] seq_cst; pairs with [X1]/[X3] in shutdown().
    p.busy.store(true, std::memory_order_seq_cst);
    const phase now = m_phase.load(std::memory_order_seq_cst);
    if (continuation ? now == phase::stopped : now != phase::running) {
      p.busy.store(false, std::memory_order_relaxed);
      if (node->holds_lane_slot)
        release_slot(l);
      p.lanes[l].rejected.add();
      throw rejected("offload: executor is shut down; submission rejected");
    }
    const detail::text_ref hook_name = name_for_hook(node);  // the node is not ours once queued
    node->set_enqueued_ns(sample_time(p.timing_tick));
    p.lanes[l].submitted.add();  // counted before the task is visible: see lane_counters
    bool queued = false;
    try {
      queued = m_inboxes[l].enqueue(p.tokens[l], node);
    } catch (...) {
    }
    if (!queued) {  // out of memory: the caller discards the task, so count it as resolved
      resolve_outside(l, task_outcome::cancelled);
      if (node->holds_lane_slot)
        release_slot(l);
      p.busy.store(false, std::memory_order_release);
      throw std::bad_alloc();
    }
    // [X4] release; pairs with [X3]: shutdown sees the enqueue once it sees the flag clear.
    p.busy.store(false, std::memory_order_release);
    note_lanes_refilled();  // before the hook: the stamp must not wait for it
    notify_submitted(hook_name, lane);
    m_idle.notify_one();
  }

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
          since, detail::tick_clock::now_ns(), std::memory_order_relaxed);
    }
  }

  /// The enqueue time of a task chosen for timing (one in timing_sample_interval), else 0.
  std::uint64_t sample_time(std::uint32_t& tick) const noexcept {
    if (++tick < m_options.timing_sample_interval)
      return 0;
    tick = 0;
    return detail::tick_clock::now_ns();
  }

  /// Takes a slot of the task's bounded lane for a submission from outside the pool, applying
  /// the lane's overflow policy when it is full. Returns false if the task ran on this thread
  /// (caller_runs); throws offload::rejected (reject, or block timed out, or shutdown).
  bool reserve_slot(producer& p, detail::task_node* node) {
    const std::size_t l = index_of(node->lane);
    const lane_options& limits = m_options.lanes[l];
    lane_limit& limit = m_lane_limits[l];
    auto try_take = [&] {
      // relaxed: the count is only a bound; blocked submitters are woken through `room`.
      if (limit.waiting.fetch_add(1, std::memory_order_relaxed) < limits.capacity)
        return true;
      limit.waiting.fetch_sub(1, std::memory_order_relaxed);
      return false;
    };
    auto refuse = [&](const char* why) {
      p.lanes[l].rejected.add();
      throw rejected(std::string("offload: lane '") + std::string(to_string(node->lane)) +
                     "' is full (capacity " + std::to_string(limits.capacity) + ")" + why);
    };
    if (try_take()) {
      node->holds_lane_slot = true;
      return true;
    }
    if (limits.overflow == overflow_policy::reject)
      refuse("; submission rejected");
    if (limits.overflow == overflow_policy::caller_runs) {
      run_on_caller(p, node);
      return false;
    }
    const auto deadline = std::chrono::steady_clock::now() + limits.block_timeout;
    for (;;) {
      auto key = limit.room.prepare_wait();
      if (try_take()) {
        limit.room.cancel_wait();
        node->holds_lane_slot = true;
        return true;
      }
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline || m_phase.load(std::memory_order_relaxed) != phase::running) {
        limit.room.cancel_wait();
        if (m_phase.load(std::memory_order_relaxed) != phase::running) {
          p.lanes[l].rejected.add();
          throw rejected("offload: executor is shut down; submission rejected");
        }
        refuse("; no room within block_timeout, submission rejected");
        return false;  // not reached: refuse() throws
      }
      limit.room.commit_wait(key, deadline - now);
    }
  }

  /// A worker took a task that held a lane slot: frees the slot and wakes a blocked submitter.
  void release_slot(std::size_t l) noexcept {
    m_lane_limits[l].waiting.fetch_sub(1, std::memory_order_relaxed);
    m_lane_limits[l].room.notify_one();
  }

  /// overflow_policy::caller_runs: runs the task here, counted as submitted and resolved. The
  /// producer's busy flag covers only the phase check and the count, never the task: the task may
  /// call anything, stats() and shutdown()'s other steps included. shutdown() waits for tasks
  /// running this way through m_on_callers.
  void run_on_caller(producer& p, detail::task_node* node) {
    const std::size_t l = index_of(node->lane);
    const offload::lane lane = node->lane;
    // [X2] as in enqueue_external().
    p.busy.store(true, std::memory_order_seq_cst);
    if (m_phase.load(std::memory_order_seq_cst) != phase::running) {
      p.busy.store(false, std::memory_order_relaxed);
      p.lanes[l].rejected.add();
      throw rejected("offload: executor is shut down; submission rejected");
    }
    p.lanes[l].submitted.add();
    m_on_callers.fetch_add(1, std::memory_order_relaxed);  // published by [X4]
    // [X4] release; pairs with [X3]: shutdown sees the count and the increment once it sees the
    // flag clear.
    p.busy.store(false, std::memory_order_release);
    struct done_on_caller {
      executor* ex;
      const executor* outer = std::exchange(tl_running_on_caller, ex);
      ~done_on_caller() {
        tl_running_on_caller = outer;
        // [O1] release; pairs with the acquire in wait_for_callers() [O2]: the task's
        // accounting is done before shutdown() may return.
        ex->m_on_callers.fetch_sub(1, std::memory_order_release);
        ex->m_quiet.notify_all();
      }
    } done{this};
    const detail::text_ref name = node->take_name();  // the node is freed once run
    notify_submitted(name, lane);
    task_outcome outcome = task_outcome::succeeded;
    std::exception_ptr error;
    notify_started(name.text(), lane);
    try {
      outcome = detail::run_task(node);
    } catch (...) {
      outcome = task_outcome::failed;
      error = std::current_exception();
      report_detached_failure(error);
    }
    if (outcome == detail::k_outcome_retried || outcome == detail::k_outcome_deferred)
      return;  // not final: it waits in the timer, and a worker runs its next attempt
    if (outcome == task_outcome::failed)
      error = take_failure(name.text(), lane, std::move(error));
    notify_finished(name.text(), lane, outcome, error);
    resolve_outside(l, outcome);
    m_quiet.notify_all();  // a wait_idle() caller may be waiting for this task
  }

  /// shutdown(): waits until no task runs on a submitting thread (caller_runs).
  void wait_for_callers() {
    for (;;) {
      auto key = m_quiet.prepare_wait();
      if (m_on_callers.load(std::memory_order_acquire) == 0) {  // [O2]
        m_quiet.cancel_wait();
        return;
      }
      m_quiet.commit_wait(key);
    }
  }

  /// Counts a task resolved by no worker (discarded, refused after counting, or run inline).
  void resolve_outside(std::size_t l, task_outcome o) noexcept {
    // [M2] release; pairs with [M1] in metrics() and quiescent(): the resolution is visible.
    m_resolved_outside[l][static_cast<std::size_t>(o)].fetch_add(1, std::memory_order_release);
  }

  /// A reference to the node's name for the on_submitted hook, taken before the node is queued
  /// (it may then be run and freed at once); none without the hook.
  [[gnu::always_inline]] detail::text_ref name_for_hook(const detail::task_node* node) const {
    if (!m_options.hooks.on_submitted) [[likely]]
      return {};
    return node->share_name();
  }

  /// Takes the name and lane, not the node: once queued, the node may already be run and freed.
  [[gnu::always_inline]] void notify_submitted(const detail::text_ref& name,
                                               offload::lane lane) const {
    if (!m_options.hooks.on_submitted) [[likely]]
      return;
    notify_submitted_slow(name.text(), lane);
  }
  [[gnu::noinline]] void notify_submitted_slow(const std::string* name, offload::lane lane) const {
    call_hook(m_options.hooks.on_submitted,
              task_event{name ? std::string_view(*name) : std::string_view(),
                         lane,
                         task_outcome::succeeded,
                         nullptr});
  }

  void notify_started(const std::string* name, offload::lane lane) const {
    if (m_options.hooks.on_started) {
      call_hook(m_options.hooks.on_started,
                task_event{name ? std::string_view(*name) : std::string_view(),
                           lane,
                           task_outcome::succeeded,
                           nullptr});
    }
  }

  void notify_finished(const std::string* name,
                       offload::lane lane,
                       task_outcome outcome,
                       const std::exception_ptr& error) const {
    const std::string_view n = name ? std::string_view(*name) : std::string_view();
    if (outcome == task_outcome::failed && m_options.hooks.on_failure)
      call_hook(m_options.hooks.on_failure, task_event{n, lane, outcome, error});
    if (m_options.hooks.on_finished)
      call_hook(m_options.hooks.on_finished, task_event{n, lane, outcome, error});
  }

  static void call_hook(const std::function<void(const task_event&)>& hook,
                        const task_event& e) noexcept {
    try {
      hook(e);
    } catch (...) {  // hooks must not throw; if one does, the task's accounting still completes
    }
  }

  /// The calling thread's producer record for this executor (cached per thread).
  producer& local_producer() {
    struct cache_entry {
      std::uint64_t uid = 0;
      producer* p = nullptr;
    };
    thread_local cache_entry cache[4];
    thread_local unsigned next_victim = 0;
    for (auto& e : cache) {
      if (e.uid == m_uid)
        return *e.p;
    }
    producer* found = nullptr;
    {
      std::lock_guard lock(m_producers_mutex);
      const auto me = std::this_thread::get_id();
      for (auto& p : m_producers) {
        if (p->thread == me)
          found = p.get();
      }
      if (found == nullptr) {
        m_producers.push_back(std::make_unique<producer>(m_inboxes));
        found = m_producers.back().get();
        found->thread = me;
      }
    }
    cache[next_victim++ % 4] = {m_uid, found};
    return *found;
  }

  /// True once shutdown(cancel) began: found tasks are discarded (futures resolved), not run.
  bool cancelling() const noexcept { return m_discard_queued.load(std::memory_order_relaxed); }

  /// Finds a task for worker w: for each lane from critical down, its own deque (LIFO), the
  /// lane's injection queue, then stealing. Every starvation_guard-th task taken, the search
  /// starts at a lower lane (high, normal, low in turn) instead of critical. Lanes never used are
  /// skipped. The common case is kept small enough to inline into the worker loops.
  detail::task_node* find_task(detail::worker& w) {
    const bool inbox_first = ++w.ticks % k_inbox_interval == 0;
    if (w.picks_to_guard <= 1 || inbox_first)
      return find_task_rare(w, inbox_first);
    const std::uint32_t used = m_lanes_used.load(std::memory_order_relaxed);
    for (std::size_t l = 0; l < k_lane_count; ++l) {
      if ((used & (1u << l)) == 0)
        continue;
      // The owner's empty_hint() is exact when it says empty (only thieves move top, upwards),
      // so the costlier pop() runs only when there is something to pop.
      if (!w.deque(l).empty_hint()) {
        if (auto local = w.deque(l).pop())
          return took(w, *local);
      }
      if (detail::task_node* node = take_remote(w, l, false))
        return took(w, node);
    }
    return nullptr;
  }

  detail::task_node* took(detail::worker& w, detail::task_node* node) const noexcept {
    if (--w.picks_to_guard == 0)
      w.picks_to_guard = m_options.starvation_guard;
    return node;
  }

  /// find_task() for a starvation-guard pick or an inbox-first round.
  [[gnu::noinline]] detail::task_node* find_task_rare(detail::worker& w, bool inbox_first) {
    const std::uint32_t used = m_lanes_used.load(std::memory_order_relaxed);
    detail::task_node* node = nullptr;
    if (w.picks_to_guard <= 1) {
      // A guard pick: the lanes below critical in rotation, starting one further each time, so
      // that every one of them comes first at least once per 3 guard picks, whether or not the
      // others have work.
      const std::uint32_t turn = w.guard_turn++;
      for (std::uint32_t k = 0; k < k_lane_count - 1 && node == nullptr; ++k) {
        const std::size_t l = 1 + (turn + k) % (k_lane_count - 1);
        if ((used & (1u << l)) != 0)
          node = take_from_lane(w, l, inbox_first);
      }
    }
    for (std::size_t l = 0; l < k_lane_count && node == nullptr; ++l) {
      if ((used & (1u << l)) != 0)
        node = take_from_lane(w, l, inbox_first);
    }
    return node != nullptr ? took(w, node) : nullptr;
  }

  detail::task_node* take_from_lane(detail::worker& w, std::size_t l, bool inbox_first) {
    detail::task_node* node = nullptr;
    if (inbox_first && m_inboxes[l].try_dequeue(w.inbox_tokens[l], node))
      return node;
    if (!w.deque(l).empty_hint()) {
      if (auto local = w.deque(l).pop())
        return *local;
    }
    return take_remote(w, l, inbox_first);
  }

  /// Lane l's injection queue (unless just tried), then stealing.
  [[gnu::noinline]] detail::task_node* take_remote(detail::worker& w,
                                                   std::size_t l,
                                                   bool inbox_tried) {
    detail::task_node* node = nullptr;
    if (!inbox_tried && m_inboxes[l].try_dequeue(w.inbox_tokens[l], node))
      return node;
    return steal(w, l);
  }

  detail::task_node* steal(detail::worker& w, std::size_t l) {
    const auto n = static_cast<std::uint32_t>(m_workers.size());
    if (n < 2)
      return nullptr;
    if (!w.steal_order.empty())
      return steal_nearest_first(w, l);
    const std::uint32_t start = w.rng.next() % n;
    for (std::uint32_t i = 0; i < n; ++i) {
      detail::worker& victim = *m_workers[(start + i) % n];
      if (&victim == &w)
        continue;
      if (detail::task_node* node = steal_from(w, victim, l))
        return node;
    }
    return nullptr;
  }

  /// One victim's deque of lane l, retried on a lost race; null if empty.
  detail::task_node* steal_from(detail::worker& w, detail::worker& victim, std::size_t l) {
    for (int attempt = 0; attempt < k_steal_attempts; ++attempt) {
      auto r = victim.deque(l).steal();
      if (r.status == detail::steal_status::success) {
        w.counters.steals.add();
        return r.value;
      }
      if (r.status == detail::steal_status::empty)
        break;
    }
    return nullptr;
  }

  /// steal() with placement: victims in the order of the topology, nearest first.
  [[gnu::noinline]] detail::task_node* steal_nearest_first(detail::worker& w, std::size_t l) {
    for (const unsigned v : w.steal_order) {
      if (detail::task_node* node = steal_from(w, *m_workers[v], l))
        return node;
    }
    return nullptr;
  }

  /// Runs (or, while cancelling, discards) one task on worker w, with its accounting: taken and
  /// outcome. A task that is timed, holds a lane slot, or runs while event hooks are set takes
  /// execute_observed(), which adds queue wait, run time, the slot's release and the hooks.
  void execute(detail::worker& w, detail::task_node* node) { execute_inline(w, node); }

  /// execute(), inlined: where waits nest (run_local_task), one call frame fewer per level.
  [[gnu::always_inline]] void execute_inline(detail::worker& w, detail::task_node* node) {
    if (node->timed || node->holds_lane_slot || m_has_task_hooks) [[unlikely]] {
      execute_observed(w, node);
      return;
    }
    execute_task<false>(w, node);
  }

  [[gnu::noinline]] void execute_observed(detail::worker& w, detail::task_node* node) {
    execute_task<true>(w, node);
  }

  template <bool Observed>
  [[gnu::always_inline]] void execute_task(detail::worker& w, detail::task_node* node) {
    const offload::lane task_lane = node->lane;
    const std::size_t l = index_of(task_lane);
    detail::lane_counters& lc = w.counters.lanes[l];
    [[maybe_unused]] std::uint64_t enqueued = 0;  // 0: not sampled for timing
    [[maybe_unused]] std::uint64_t start = 0;
    if constexpr (Observed) {
      if (node->holds_lane_slot)
        release_slot(l);
    }
    lc.taken.add();
    if constexpr (Observed) {
      enqueued = node->enqueued_ns();
      if (enqueued != 0) {
        start = detail::tick_clock::now_ns();
        lc.wait.record(start > enqueued ? start - enqueued : 0);
        lc.last_taken_enqueued_ns.store(enqueued, std::memory_order_relaxed);
      }
    }
    ++w.fiber_depth;
    const offload::lane outer_lane = std::exchange(w.current_lane, task_lane);
    // The name's reference leaves the node, which is freed once run (an unnamed task: none).
    const detail::text_ref name = node->take_name();
    task_outcome outcome = task_outcome::cancelled;
    std::exception_ptr error;
    if (cancelling()) [[unlikely]] {
      detail::discard_task(node, detail::discard_reason::shutdown);
    } else {
      if constexpr (Observed)
        notify_started(name.text(), task_lane);
      try {
        outcome = detail::run_task(node);
      } catch (...) {
        outcome = task_outcome::failed;
        error = std::current_exception();
        w.counters.failed.add();
        report_detached_failure(error);
      }
    }
    if constexpr (Observed) {
      if (enqueued != 0) {
        const std::uint64_t end = detail::tick_clock::now_ns();  // maybe on another core
        lc.run.record(end > start ? end - start : 0);
      }
    }
    w.current_lane = outer_lane;
    --w.fiber_depth;
    if (!Observed && outcome == task_outcome::succeeded) [[likely]] {
      lc.completed[static_cast<std::size_t>(task_outcome::succeeded)].add();
      return;
    }
    count_outcome(lc, name.text(), task_lane, outcome, std::move(error));
  }

  /// The accounting of every outcome but a success on execute()'s short path: retried
  /// and deferred attempts are not final; a failure takes its dead letter; the finish hooks run;
  /// then the outcome is counted. `error`: the exception that escaped the task, if one did.
  [[gnu::noinline]] void count_outcome(detail::lane_counters& lc,
                                       const std::string* name,
                                       offload::lane lane,
                                       task_outcome outcome,
                                       std::exception_ptr error) {
    if (outcome == detail::k_outcome_retried || outcome == detail::k_outcome_deferred)
      return;  // not final, and counted already (count_not_final())
    if (outcome == task_outcome::failed)
      error = take_failure(name, lane, std::move(error));
    if (m_has_finish_hooks)
      notify_finished(name, lane, outcome, error);
    lc.completed[static_cast<std::size_t>(outcome)].add();
  }

  void report_detached_failure(std::exception_ptr e) noexcept {
    if (!m_options.on_task_error)
      return;
    try {
      m_options.on_task_error(std::move(e));
    } catch (...) {  // the handler must not throw; if it does, the process still survives
    }
  }

  /// Looks for work for up to the spin budget. Returns a task or null.
  detail::task_node* spin_for_task(detail::worker& w) {
    const auto budget = m_options.spin_before_park;
    if (budget <= std::chrono::nanoseconds::zero())
      return nullptr;
    const auto until = std::chrono::steady_clock::now() + budget;
    for (unsigned i = 0;; ++i) {
      // A few short pause loops, then yields: a searching worker must not hold a CPU that the
      // producer (or a waiter woken onto it) needs. With pure pausing, one producer feeding two
      // workers on two cores ran at 2.2 µs per task; with yields, at 0.3 µs.
      if (i < k_pause_rounds) {
        for (int k = 0; k < 32; ++k) detail::cpu_relax();
      } else {
        std::this_thread::yield();
      }
      if (detail::task_node* node = find_task(w))
        return node;
      if (m_phase.load(std::memory_order_relaxed) == phase::stopped)
        return nullptr;
      if (w.fibers && w.fibers->has_ready())
        return nullptr;  // a woken task waits for this worker
      if ((i & 7) == 7 && std::chrono::steady_clock::now() >= until)
        return nullptr;
    }
  }

  void run_worker(detail::worker& w) {
    w.thread_stack = detail::current_thread_stack();
    detail::tl_current_scheduler = this;
    detail::tl_keep_failure_error = m_has_finish_hooks;  // only failure hooks need the exception
    tl_worker = &w;
    if (w.fibers) {
      struct loop_context {
        executor* self;
        detail::worker* w;
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
    detail::tl_current_scheduler = nullptr;
    w.counters.alive.store(false, std::memory_order_relaxed);
  }

  /// The worker loop: runs on the worker thread's stack, or (fibers on) on whichever of the
  /// worker's fibers is not waiting. Returns when the executor stopped and no task of this
  /// worker is suspended.
  void worker_loop(detail::worker& w) {
    detail::fiber_runtime* fibers = w.fibers.get();
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
      if (detail::task_node* node = find_task(w)) {
        if (fibers != nullptr)
          fibers->count_start();
        execute(w, node);
        continue;
      }
      if (fibers != nullptr && fibers->has_yielded() && fibers->resume_yielded())
        continue;
      m_quiet.notify_all();  // out of work: a wait_idle() caller may be waiting for this moment
      if (detail::task_node* found = spin_for_task(w)) {
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
      if (detail::task_node* found = find_task(w)) {
        m_idle.cancel_wait();
        if (fibers != nullptr)
          fibers->count_start();
        execute(w, found);
        continue;
      }
      // Stop only once no task of this worker is suspended: they resume here.
      // acquire; pairs with the seq_cst store of phase::stopped in shutdown().
      if (m_phase.load(std::memory_order_acquire) == phase::stopped && w.suspended() == 0) {
        m_idle.cancel_wait();
        // A make_ready() that published the last woken fiber may still be in its notify.
        while (fibers != nullptr && !fibers->wakers_done()) std::this_thread::yield();
        break;
      }
      w.counters.parks.add();
      m_freshness.parked_ns.store(detail::tick_clock::now_ns(), std::memory_order_relaxed);
      m_idle.commit_wait(key);
    }
  }

  // --- waits inside tasks (detail::scheduler) ---------------------------------------------------

  bool run_local_task() override {
    detail::worker& w = *tl_worker;
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

  bool suspend(detail::suspend_arm& a) override {
    detail::worker& w = *tl_worker;
    if (!w.fibers || !w.fibers->can_suspend())
      return false;
    // Thread-locals that other tasks on this worker use while this one waits: saved here, and
    // reset so that the tasks run meanwhile start from a clean slate (their scopes then nest
    // within this fiber's own).
    const detail::task_context task = std::exchange(detail::tl_task_context, {});
    const offload::lane task_lane = std::exchange(w.current_lane, offload::lane::normal);
    detail::failure_note failure = std::move(detail::tl_failure);
    // The tasks running on this fiber (the waiter and those it ran nested) stop counting as busy.
    const std::uint32_t depth = std::exchange(w.fiber_depth, 0);
    w.suspended_frames.store(w.suspended_frames.load(std::memory_order_relaxed) + depth,
                             std::memory_order_relaxed);
    const bool dead_letter_recorded = std::exchange(detail::tl_dead_letter_recorded, false);
    const detail::continuation_queue continuations = std::exchange(detail::tl_continuations, {});
    bool suspended = true;
    try {
      w.fibers->suspend(a);
    } catch (...) {  // no memory for a new fiber: the caller waits another way
      suspended = false;
    }
    w.suspended_frames.store(w.suspended_frames.load(std::memory_order_relaxed) - depth,
                             std::memory_order_relaxed);
    w.fiber_depth = depth;
    detail::tl_task_context = task;
    w.current_lane = task_lane;
    detail::tl_failure = std::move(failure);
    detail::tl_dead_letter_recorded = dead_letter_recorded;
    detail::tl_continuations = continuations;
    return suspended;
  }

  /// this_task::sleep_for() in a task: suspends the task's fiber on a timer entry (or sleeps the
  /// thread where it cannot suspend). Ends early when the task's future is cancelled, and when
  /// shutdown(cancel) stops the timer.
  void sleep_for(clock::duration d) override {
    const detail::shared_state_base* task = detail::tl_task_context.state;
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

  /// Suspends the calling task on a timer entry after `d` (cut short if `task`, its future's
  /// state, is cancelled); true if it suspended.
  bool sleep_suspended(clock::duration d, const detail::shared_state_base* task) {
    detail::worker& w = *tl_worker;
    if (!w.fibers || !w.fibers->can_suspend())
      return false;
    struct arm_sleep final : detail::suspend_arm {
      executor* self;
      clock::duration d;
      const detail::shared_state_base* task;
      arm_sleep(executor* ex, clock::duration dur, const detail::shared_state_base* t) noexcept
          : self(ex), d(dur), task(t) {}
      void arm(detail::fiber* suspended) noexcept override {
        try {
          auto wake = std::make_shared<detail::sleep_wake>([suspended] {
            detail::fiber_runtime::make_ready(suspended);
          });
          wake->arm(*self, d, task);  // if the timer refuses, the discard resumes the fiber now
        } catch (...) {               // no memory: resume now, sleep on the thread
          detail::fiber_runtime::make_ready(suspended);
        }
      }
    } arm{this, d, task};
    return suspend(arm);
  }

  /// Sleeps the calling thread until `due`, or until `task` (if any) is cancelled.
  static void sleep_on_thread(clock::time_point due, const detail::shared_state_base* task) {
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

  bool yield_task() override {
    detail::worker& w = *tl_worker;
    if (!w.fibers || !w.fibers->can_suspend())
      return false;
    struct to_yielded final : detail::suspend_arm {
      detail::fiber_runtime* rt;
      explicit to_yielded(detail::fiber_runtime* r) noexcept : rt(r) {}
      void arm(detail::fiber* suspended) noexcept override { rt->push_yielded(suspended); }
    } arm{w.fibers.get()};
    return suspend(arm);
  }

  /// True if the calling worker's current stack (its fiber's, or the thread's) has room to run
  /// another task nested: a quarter of it, between 16 KiB and 256 KiB, stays free.
  bool room_to_nest(detail::worker& w) const noexcept {
    const detail::stack_bounds& stack = w.fibers ? w.fibers->current_stack() : w.thread_stack;
    return stack.room() >= stack.reserve();
  }

  bool help_until(const std::function<bool()>& done) override {
    detail::worker& w = *current_worker();
    auto nap = std::chrono::microseconds(50);
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
      if (detail::task_node* node = find_task(w)) {
        execute(w, node);
        idle = 0;
        nap = std::chrono::microseconds(50);
        continue;
      }
      if (++idle < 64) {
        for (int k = 0; k < 32; ++k) detail::cpu_relax();
        continue;
      }
      // Nothing to run: sleep until new work arrives or a short timeout, then re-check done().
      // The timeout bounds the delay when `done` becomes true without new work (the awaited
      // task finished on another worker); it doubles up to 1 ms while nothing happens.
      auto key = m_idle.prepare_wait();
      if (done()) {
        m_idle.cancel_wait();
        break;
      }
      if (detail::task_node* node = find_task(w)) {
        m_idle.cancel_wait();
        execute(w, node);
        continue;
      }
      m_idle.commit_wait(key, nap);
      nap = std::min(nap * 2, std::chrono::microseconds(1000));
    }
    return true;
  }

  /// Σ completed == Σ submitted, read completed-first: counters only grow and a task is counted
  /// as submitted before it can complete, so equality means idle at some instant during the call.
  bool quiescent() const {
    const std::uint64_t completed = completed_total();
    return completed == submitted_total();
  }

  std::uint64_t completed_total() const noexcept {
    std::uint64_t n = 0;
    for (std::size_t l = 0; l < k_lane_count; ++l) {
      for (std::size_t o = 0; o < k_outcome_count; ++o) {
        n += m_resolved_outside[l][o].load(std::memory_order_acquire);  // [M1]
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
    std::lock_guard lock(m_producers_mutex);
    for (const auto& p : m_producers) {
      for (std::size_t l = 0; l < k_lane_count; ++l) {
        lanes[l].submitted += p->lanes[l].submitted.read();
        lanes[l].rejected += p->lanes[l].rejected.read();
      }
    }
  }

  /// Heartbeats, observed from outside: for each worker, how long it has been seen inside one
  /// task (running, and no task finished) across calls of metrics() and health(). The first
  /// observation of a task starts its clock, so the figure is a lower bound that is exact to the
  /// interval between observations; workers pay nothing for it beyond two counters.
  std::vector<double> observe_workers(std::uint64_t now) const {
    std::lock_guard lock(m_watch_mutex);
    m_watch.resize(m_workers.size());
    std::vector<double> running_for(m_workers.size(), 0.0);
    for (const auto& w : m_workers) {
      watch& seen = m_watch[w->index];
      const std::uint64_t finished = w->counters.finished();
      bool busy = false;
      std::uint64_t running = 0;
      for (const auto& lc : w->counters.lanes) running += lc.running();
      // Tasks suspended in a wait (with the tasks they ran nested) hold no worker.
      busy = running > w->suspended_frames.load(std::memory_order_relaxed);
      if (busy && seen.busy && seen.finished == finished) {
        // Both stamps may come from different cores: clamp the skew (see tick_clock).
        running_for[w->index] =
            now > seen.since_ns ? static_cast<double>(now - seen.since_ns) * 1e-9 : 0.0;
      } else {
        seen = {finished, busy, now};
      }
    }
    return running_for;
  }

  /// After the workers joined: resolves whatever is still queued (cancel mode, or a race).
  void discard_leftovers() {
    auto discard = [this](detail::task_node* node) {
      const std::size_t l = index_of(node->lane);
      if (node->holds_lane_slot)
        release_slot(l);
      detail::discard_task(node, detail::discard_reason::shutdown);
      resolve_outside(l, task_outcome::cancelled);
    };
    for (std::size_t l = 0; l < k_lane_count; ++l) {
      for (auto& w : m_workers) {
        while (auto node = w->deque(l).pop()) discard(*node);
      }
      detail::task_node* node = nullptr;
      while (m_inboxes[l].try_dequeue(node)) discard(node);
    }
    m_quiet.notify_all();
  }

  static inline thread_local detail::worker* tl_worker = nullptr;
  /// The executor whose task runs on this (submitting) thread now, by caller_runs; null if none.
  static inline thread_local const executor* tl_running_on_caller = nullptr;

  executor_options m_options;
  std::string m_placement_note;
  std::uint64_t m_uid;             // distinguishes executors in threads' producer caches
  detail::timer_service m_timers;  // delays, deadlines, retries; its thread starts on first use
  std::uint64_t m_started_ns = 0;
  /// When a worker last parked, and the first enqueue after it (tick_clock ns): see
  /// note_lanes_refilled(). Its own line: read by every enqueue, written only around parks.
  struct alignas(detail::k_cache_line) freshness {
    std::atomic<std::uint64_t> parked_ns{0};
    std::atomic<std::uint64_t> since_ns{0};
  } m_freshness;
  bool m_has_finish_hooks = m_options.hooks.on_failure || m_options.hooks.on_finished;
  bool m_has_task_hooks = m_has_finish_hooks || m_options.hooks.on_started;
  detail::lane_inboxes m_inboxes;
  std::array<lane_limit, k_lane_count> m_lane_limits;
  alignas(detail::k_cache_line) std::atomic<std::uint32_t> m_lanes_used{0};  // bit per lane
  std::vector<std::unique_ptr<detail::worker>> m_workers;
  detail::event_count m_idle;   // workers (and helping waiters) sleep here
  detail::event_count m_quiet;  // wait_idle() callers sleep here
  alignas(detail::k_cache_line) std::atomic<phase> m_phase{phase::running};
  std::atomic<bool> m_discard_queued{false};   // set once by shutdown(cancel)
  std::atomic<std::uint32_t> m_on_callers{0};  // tasks running on submitters now (caller_runs)
  // Tasks counted as submitted but resolved by no worker, by lane and outcome: discarded after
  // the workers stopped, refused by an allocation failure after being counted, or run on the
  // submitting thread (caller_runs).
  std::array<std::array<std::atomic<std::uint64_t>, k_outcome_count>, k_lane_count>
      m_resolved_outside{};
  // Attempts run by their submitter (caller_runs) that were not final (a retry or a rate-limit
  // deferral followed), by lane: taken off the queue as far as metrics' queued gauge goes.
  std::array<std::atomic<std::uint64_t>, k_lane_count> m_taken_outside{};
  // Of those, the retries: metrics' retries. A metrics-only count (relaxed): nothing decides on
  // it, and metrics() may read it one retry behind m_taken_outside.
  std::array<std::atomic<std::uint64_t>, k_lane_count> m_retried_outside{};
  mutable std::mutex m_producers_mutex;  // slow path: registering a producer, stats, shutdown
  std::vector<std::unique_ptr<producer>> m_producers;
  std::mutex m_shutdown_mutex;
  struct watch {
    std::uint64_t finished = 0;
    bool busy = false;
    std::uint64_t since_ns = 0;
  };
  mutable std::mutex m_watch_mutex;  // slow path: metrics() and health()
  mutable std::vector<watch> m_watch;
  struct token_bucket {
    double per_second = 1;
    double burst = 1;
    double tokens = 0;
    clock::time_point refilled{};
  };
  std::mutex m_periodics_mutex;  // schedule_every() and shutdown
  std::vector<std::weak_ptr<detail::periodic_control>> m_periodics;
  std::mutex m_buckets_mutex;  // rate-limited tasks only
  std::unordered_map<std::string, token_bucket> m_buckets;
  mutable std::mutex m_dead_mutex;  // failure path: the dead-letter store
  mutable std::deque<dead_letter> m_dead;
  mutable std::size_t m_dead_bytes = 0;  // Σ footprint(m_dead); guarded by m_dead_mutex
  std::uint64_t m_next_dead_id = 0;
  std::mutex m_keys_mutex;  // keyed submissions: de-duplication table
  std::unordered_map<std::string_view, key_entry> m_keys;  // views into the entries' key records
  std::uint64_t m_next_key_ticket = 0;                     // guarded by m_keys_mutex
  detail::name_table m_names;  // task names in use (a thread's first submission of a name locks)
  std::mutex m_plans_mutex;    // slow path: a thread's first policy submission of a new signature
  std::unordered_map<plan_signature, std::unique_ptr<detail::task_plan>, plan_signature::hash>
      m_plans;
};

}  // namespace offload
