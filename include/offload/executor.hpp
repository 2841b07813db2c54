#pragma once

/// @file executor.hpp
/// @brief offload::executor: a work-stealing thread pool with lock-free submission, futures and
/// bounded-spin parking; the façade over the pool (detail/pool), the policy layer
/// (detail/policy) and the readers (detail/observe).

#include <cstdio>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "offload/clock.hpp"
#include "offload/dead_letter.hpp"
#include "offload/detail/bind.hpp"
#include "offload/detail/observe/telemetry.hpp"
#include "offload/detail/policy/dead_letter_store.hpp"
#include "offload/detail/policy/periodic_scheduler.hpp"
#include "offload/detail/policy/policy_engine.hpp"
#include "offload/detail/pool/pool.hpp"
#include "offload/detail/range_split.hpp"
#include "offload/detail/scheduler.hpp"
#include "offload/detail/shared_state.hpp"
#include "offload/detail/task_node.hpp"
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
class executor final {
 public:
  /// Starts the workers. Throws std::invalid_argument for invalid options.
  explicit executor(executor_options options = {})
      : m_dead_letters(make_dead_letter_store(options)),
        m_pool(std::move(options), m_dead_letters, this),
        m_policy(m_pool, m_dead_letters),
        m_periodic(m_pool),
        m_telemetry(m_pool, m_dead_letters) {}

  executor(const executor&) = delete;
  executor& operator=(const executor&) = delete;

  /// Drains: runs everything accepted, then joins the workers.
  ~executor() {
    if (m_pool.on_own_thread()) {
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
    if (options.needs_policy()) {
      return m_policy.submit<detail::call_result_t<F, Args...>, true>(
          options, detail::bind<true>(std::forward<F>(fn), std::forward<Args>(args)...));
    }
    return submit_with(&options, std::forward<F>(fn), std::forward<Args>(args)...);
  }

  /// Runs `fn(args...)` on a worker and drops its result. An exception it throws is counted
  /// (executor_stats::failed_detached) and passed to executor_options::on_task_error.
  /// Throws offload::rejected after shutdown began. Thread-safe.
  template <class F, class... Args>
  requires(!std::is_same_v<std::remove_cvref_t<F>, task_options>) void post(F&& fn,
                                                                            Args&&... args) {
    m_pool.enqueue(
        detail::make_task(detail::bind(std::forward<F>(fn), std::forward<Args>(args)...)), nullptr);
  }

  /// As post(fn, args...), with a lane and a name (see submit(options, ...)).
  template <class F, class... Args>
  void post(const task_options& options, F&& fn, Args&&... args) {
    options.validate();
    if (options.needs_policy()) {
      (void)m_policy.submit<detail::call_result_t<F, Args...>, false>(
          options, detail::bind<true>(std::forward<F>(fn), std::forward<Args>(args)...));
      return;
    }
    m_pool.enqueue(
        detail::make_task(detail::bind(std::forward<F>(fn), std::forward<Args>(args)...)),
        &options);
  }

  /// Runs `fn(i)` for every i in [0, count) on the workers, fire-and-forget, as `count` post()
  /// calls would, at a fraction of their cost: the calls go out as one task that splits among
  /// the workers taking its pieces (detail/range_split.hpp). A call that throws is handled as a
  /// failed post() (counted in executor_stats::failed_detached, passed to on_task_error) and the
  /// other calls still run. The bulk takes one slot of a bounded lane from outside the pool (its
  /// pieces are spawned inside it). `fn` is called concurrently, from several workers, and is
  /// destroyed after the last call. Throws offload::rejected after shutdown began.
  template <class F>
  void post_bulk(std::size_t count, F&& fn) {
    post_bulk_with(nullptr, count, std::forward<F>(fn));
  }

  /// As post_bulk(count, fn), in `options.lane` under `options.name`. Throws
  /// std::invalid_argument for options a bulk does not take (retry, delay, deadline, key, rate).
  template <class F>
  void post_bulk(const task_options& options, std::size_t count, F&& fn) {
    options.validate();
    if (options.needs_policy()) {
      throw std::invalid_argument(
          "offload::executor::post_bulk: task_options.retry, delay, deadline, key and rate are "
          "not supported for a bulk");
    }
    post_bulk_with(&options, count, std::forward<F>(fn));
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
      lane = m_pool.running_lane();
    if (!is_lane(lane)) {
      throw std::invalid_argument("offload::executor::schedule: not a lane: " +
                                  std::to_string(static_cast<unsigned>(lane)));
    }
    return schedule_awaiter{&m_pool, lane};
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
    if (detail::needs_attempt_policy(options)) {
      throw std::invalid_argument(
          "offload::executor::schedule_every: task_options.retry, deadline, key and rate are not "
          "supported for periodic tasks (each run is a fresh task: retry inside the function)");
    }
    const clock::duration first = options.delay > clock::duration::zero() ? options.delay : period;
    return m_periodic.start(period, first, options, std::forward<F>(fn));
  }

  /// The dead-letter store, oldest first (a snapshot). Bounded by executor_options::dead_letters.
  std::vector<dead_letter> dead_letters() const { return m_dead_letters.snapshot(); }

  /// Runs a dead-lettered task again as a new submission (fire-and-forget, attempts reset, same
  /// lane, name, key and retry policy) and removes its record. Returns false if the record is
  /// gone (evicted or requeued already) or its callable could not be kept (not copyable). A
  /// requeue that is refused (offload::rejected after shutdown began, or no memory) throws and
  /// keeps the record.
  bool requeue(const dead_letter& record) {
    // Out of the store while it is submitted: requeued at most once.
    std::optional<dead_letter> taken = m_dead_letters.take_replayable(record.id);
    if (!taken)
      return false;
    try {
      task_options o{.lane = taken->lane,
                     .retry = taken->replay->retry,
                     .key = taken->key,
                     .name = taken->name};
      post(o, taken->replay->callable());
    } catch (...) {
      m_dead_letters.put_back(std::move(*taken));
      throw;
    }
    return true;
  }

  /// Blocks until nothing is queued or running; returns at once if idle. Everything the
  /// finished tasks did happens-before the return. Must not be called from one of this
  /// executor's tasks (it would wait for itself): throws std::logic_error. Thread-safe.
  void wait_idle() {
    if (m_pool.on_own_thread())
      throw std::logic_error("offload::executor::wait_idle() called from one of its own tasks");
    m_pool.wait_idle();
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
    if (m_pool.on_own_thread())
      throw std::logic_error("offload::executor::shutdown() called from one of its own tasks");
    // Once no submission from outside is in flight, periodic schedules end (their handles'
    // cancel() no longer reaches the pool); then the pool drains or cancels.
    m_pool.shutdown(mode, [this] {
      m_periodic.detach();
    });
  }

  unsigned worker_count() const noexcept { return m_pool.worker_count(); }

  /// What executor_options::placement did: e.g. "offload: placement compact (hwloc): 2 workers
  /// pinned to 2 PUs on 2 of 2 cores", or why it fell back. Empty for placement::none.
  const std::string& placement_note() const noexcept { return m_pool.placement_note(); }

  /// Counters summed over all threads at the time of the call (not an atomic snapshot).
  executor_stats stats() const { return m_telemetry.stats(); }

  /// Per-lane counters, gauges and histograms, and per-worker figures, summed from per-thread
  /// counters now (no lock on the workers' path; not an atomic snapshot: see lane_metrics).
  metrics_snapshot metrics() const { return m_telemetry.metrics(); }

  /// Workers alive and stuck, and per lane the queued count and the oldest queued task's age;
  /// computed by the calling thread from the workers' heartbeats.
  health_report health() const { return m_telemetry.health(); }

 private:
  friend class task_group;  // enqueues prebuilt task nodes

  /// What executor::schedule(lane) returns.
  struct schedule_awaiter {
    detail::scheduler* sched;
    offload::lane lane;
    bool await_ready() const noexcept { return false; }
    template <class P>
    void await_suspend(std::coroutine_handle<P> h) const noexcept {
      if constexpr (std::is_base_of_v<detail::task_promise_base, P>)
        h.promise().lane = lane;  // later resumptions stay in this lane
      detail::resume_point where = detail::resume_point::of(h);
      where.sched = sched;
      where.lane = lane;
      where.resume(h);  // as a task of `sched`; inline if it has stopped
    }
    void await_resume() const noexcept {}
  };

  /// What the pieces of one post_bulk() share.
  template <class F>
  struct bulk {
    F fn;
    std::optional<task_options> options;  // lane and name of the pieces
  };

  /// A piece of a post_bulk(): splits off halves for other workers, then makes its calls.
  template <class F>
  struct bulk_piece {
    executor* ex;
    std::shared_ptr<bulk<F>> shared;
    detail::range_piece piece;

    void operator()() {
      piece.split([this](detail::range_piece right) {
        ex->post_piece(bulk_piece{ex, shared, right});
      });
      for (std::size_t i = piece.first; i < piece.last; ++i) {
        try {
          shared->fn(i);
        } catch (...) {
          // Counted and reported as the failed post() it stands for, by the pool's own path.
          ex->post([e = std::current_exception()] {
            std::rethrow_exception(e);
          });
        }
      }
    }
  };

  template <class F>
  void post_piece(bulk_piece<F> p) {
    if (p.shared->options)
      post(*p.shared->options, std::move(p));
    else
      post(std::move(p));
  }

  template <class F>
  void post_bulk_with(const task_options* options, std::size_t count, F&& fn) {
    if (count == 0)
      return;
    auto shared = std::make_shared<bulk<std::decay_t<F>>>(
        bulk<std::decay_t<F>>{std::forward<F>(fn), std::nullopt});
    if (options != nullptr)
      shared->options = *options;
    post_piece(bulk_piece<std::decay_t<F>>{
        this, std::move(shared), detail::range_piece::whole(count, worker_count())});
  }

  /// Lane, name and capacity decisions for one submission.
  template <class F, class... Args>
  auto submit_with(const task_options* options, F&& fn, Args&&... args)
      -> future<detail::call_result_t<F, Args...>> {
    using R = detail::call_result_t<F, Args...>;
    auto call = detail::bind(std::forward<F>(fn), std::forward<Args>(args)...);
    detail::state_ref<R> state(detail::shared_state<R>::create(&m_pool));
    detail::state_ref<R> for_caller(state.get());  // the second of the two initial references
    detail::task_node* node = detail::make_task(
        detail::producing_task<R, decltype(call)>{std::move(state), std::move(call)});
    m_pool.enqueue(node, options);
    return detail::make_future(std::move(for_caller));
  }

  /// task_group's spawn: queues a prebuilt node; on rejection discards it and throws.
  void enqueue(detail::task_node* node, const task_options* options) {
    m_pool.enqueue(node, options);
  }

  /// Validates `options` and takes the dead-letter settings and hook out of them.
  static detail::dead_letter_store make_dead_letter_store(executor_options& options) {
    options.validate();
    return detail::dead_letter_store(
        options.dead_letters, std::move(options.on_dead_letter), options.clock);
  }

  // Declared in the order they depend on each other: each part may use those above it, and is
  // destroyed before them. shutdown() leaves nothing in the pool that refers to a later part.
  detail::dead_letter_store m_dead_letters;
  detail::pool m_pool;
  detail::policy_engine m_policy;
  detail::periodic_scheduler m_periodic;
  detail::telemetry m_telemetry;
};

}  // namespace offload
