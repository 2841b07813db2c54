#pragma once

/// @file executor.hpp
/// @brief offload::executor: a work-stealing thread pool with lock-free submission, futures and
/// bounded-spin parking.

#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <concurrentqueue/concurrentqueue.h>

#include "offload/detail/atomic.hpp"
#include "offload/detail/event_count.hpp"
#include "offload/detail/scheduler.hpp"
#include "offload/detail/task.hpp"
#include "offload/detail/worker.hpp"
#include "offload/error.hpp"
#include "offload/executor_options.hpp"
#include "offload/future.hpp"

namespace offload {

/// Aggregate counters of an executor, summed from per-thread counters at the time of the call.
struct executor_stats {
  std::uint64_t submitted = 0;        ///< tasks accepted
  std::uint64_t completed = 0;        ///< tasks finished, skipped as cancelled, or discarded
  std::uint64_t failed_detached = 0;  ///< fire-and-forget tasks that threw
  std::uint64_t steals = 0;           ///< tasks taken from another worker's deque
  std::uint64_t parks = 0;            ///< times a worker went to sleep
};

/// A pool of worker threads that runs tasks.
///
/// Path of a task: submit() from outside the pool puts it on the lock-free injection queue
/// (moodycamel ConcurrentQueue, with a producer token per submitting thread); submit() from
/// inside a worker pushes it on that worker's Chase–Lev deque. Workers pop their own deque LIFO,
/// take from the injection queue (checked first on every k_inbox_interval-th search, so it is
/// never starved by local work), and steal FIFO from random victims. An idle worker spins for
/// executor_options::spin_before_park, then sleeps on an event count; a submission makes a
/// syscall only if a worker sleeps.
///
/// Guarantees (docs/guarantees.md): every accepted task runs exactly once or its future is
/// resolved with a reason; a task's exception reaches its future unchanged and never terminates
/// the process; waiting inside a worker helps, so it never deadlocks the pool; submissions after
/// shutdown() began throw offload::rejected. Destruction drains.
/// Thread-safe, except that shutdown() and the destructor must not run on one of its workers.
class executor final : private detail::scheduler {
 public:
  /// Starts the workers. Throws std::invalid_argument for invalid options.
  explicit executor(executor_options options = {})
      : m_options((options.validate(), std::move(options))), m_uid(next_uid()) {
    const unsigned n = m_options.resolved_workers();
    m_workers.reserve(n);
    for (unsigned i = 0; i < n; ++i) {
      m_workers.push_back(std::make_unique<detail::worker>(
          i, static_cast<std::int64_t>(m_options.deque_capacity), m_inbox));
    }
    try {
      for (auto& w : m_workers)
        w->thread = std::thread([this, raw = w.get()] {
          run_worker(*raw);
        });
    } catch (...) {
      shutdown(shutdown_mode::cancel);
      throw;
    }
  }

  executor(const executor&) = delete;
  executor& operator=(const executor&) = delete;

  /// Drains: runs everything accepted, then joins the workers.
  ~executor() {
    if (detail::tl_current_scheduler == this) {
      std::fputs("offload: an executor was destroyed by one of its own tasks\n", stderr);
      std::terminate();
    }
    shutdown(shutdown_mode::drain);
  }

  /// Runs `fn(args...)` on a worker; returns its future. Arguments are decay-copied, as by
  /// std::async. Throws offload::rejected after shutdown began. Thread-safe.
  template <class F, class... Args>
  auto submit(F&& fn, Args&&... args)
      -> future<std::invoke_result_t<std::decay_t<F>, std::decay_t<Args>...>> {
    using R = std::invoke_result_t<std::decay_t<F>, std::decay_t<Args>...>;
    auto call = bind(std::forward<F>(fn), std::forward<Args>(args)...);
    detail::state_ref<R> state(detail::shared_state<R>::create(this));
    detail::state_ref<R> for_caller(state.get());  // the second of the two initial references
    detail::task_node* node = detail::make_task(
        detail::producing_task<R, decltype(call)>{std::move(state), std::move(call)});
    enqueue(node);
    return detail::make_future(std::move(for_caller));
  }

  /// Runs `fn(args...)` on a worker and drops its result. An exception it throws is counted
  /// (executor_stats::failed_detached) and passed to executor_options::on_task_error.
  /// Throws offload::rejected after shutdown began. Thread-safe.
  template <class F, class... Args>
  void post(F&& fn, Args&&... args) {
    enqueue(detail::make_task(bind(std::forward<F>(fn), std::forward<Args>(args)...)));
  }

  /// Blocks until nothing is queued or running; returns at once if idle. Everything the
  /// finished tasks did happens-before the return. Must not be called from one of this
  /// executor's tasks (it would wait for itself): throws std::logic_error. Thread-safe.
  void wait_idle() {
    if (detail::tl_current_scheduler == this) {
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
    if (detail::tl_current_scheduler == this) {
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
    {
      std::lock_guard producers(m_producers_mutex);
      for (auto& p : m_producers) {
        // [X3] seq_cst load; pairs with [X2]; the flag's release clear [X4] publishes the enqueue.
        while (p->busy.load(std::memory_order_seq_cst)) std::this_thread::yield();
      }
    }
    if (mode == shutdown_mode::drain)
      wait_idle();
    m_phase.store(phase::stopped, std::memory_order_seq_cst);
    m_idle.notify_all();
    for (auto& w : m_workers) {
      if (w->thread.joinable())
        w->thread.join();
    }
    discard_leftovers();  // workers are gone: this thread may act as every deque's owner
  }

  unsigned worker_count() const noexcept { return static_cast<unsigned>(m_workers.size()); }

  /// Counters summed over all threads at the time of the call (not an atomic snapshot).
  executor_stats stats() const {
    executor_stats s;
    // Completions are read before submissions (see quiescent()), so completed <= submitted.
    s.completed = m_resolved_outside_workers.load(std::memory_order_acquire);
    for (const auto& w : m_workers) {
      s.completed += w->counters.completed.read();
      s.failed_detached += w->counters.failed.read();
      s.steals += w->counters.steals.read();
      s.parks += w->counters.parks.read();
    }
    for (const auto& w : m_workers) s.submitted += w->counters.submitted.read();
    std::lock_guard lock(m_producers_mutex);
    for (const auto& p : m_producers) s.submitted += p->submitted.read();
    return s;
  }

 private:
  friend class task_group;  // enqueues prebuilt task nodes

  enum class phase : std::uint32_t { running, draining, cancelling, stopped };

  static constexpr int k_idle_spin = 1000;
  static constexpr std::uint32_t k_inbox_interval = 61;  // searches between inbox-first checks
  static constexpr int k_steal_attempts = 2;             // retries of a victim on a lost race
  static constexpr unsigned k_pause_rounds = 8;          // searches before yielding between them

  /// A thread that submits from outside the pool: its producer token and counters.
  struct producer {
    explicit producer(moodycamel::ConcurrentQueue<detail::task_node*>& q) : token(q) {}
    moodycamel::ProducerToken token;  // used by its thread only
    std::atomic<bool> busy{false};    // set while its thread is inside enqueue()
    detail::owned_counter submitted;  // written by its thread only
    std::thread::id thread;
  };

  template <class F, class... Args>
  static auto bind(F&& fn, Args&&... args) {
    if constexpr (sizeof...(Args) == 0) {
      return std::decay_t<F>(std::forward<F>(fn));
    } else {
      return [fn = std::decay_t<F>(std::forward<F>(fn)),
              tup = std::make_tuple(std::forward<Args>(args)...)]() mutable -> decltype(auto) {
        return std::apply(std::move(fn), std::move(tup));
      };
    }
  }

  static std::uint64_t next_uid() noexcept {
    static std::atomic<std::uint64_t> uid{1};
    return uid.fetch_add(1, std::memory_order_relaxed);
  }

  /// The calling worker, if it belongs to this executor.
  detail::worker* current_worker() const noexcept {
    return detail::tl_current_scheduler == this ? tl_worker : nullptr;
  }

  void schedule(detail::task_node* node) override { enqueue_or_throw(node); }

  /// Queues a task; on rejection discards it (resolving its future) and throws.
  void enqueue(detail::task_node* node) {
    try {
      enqueue_or_throw(node);
    } catch (...) {
      detail::discard_task(node, detail::discard_reason::rejected);
      throw;
    }
  }

  void enqueue_or_throw(detail::task_node* node) {
    if (detail::worker* w = current_worker()) {
      // Inside the pool: accepted in every phase before `stopped`, so that tasks spawned while
      // draining run and tasks spawned while cancelling are resolved by the workers' sweep.
      w->counters.submitted.add();  // before the task is visible: completed never exceeds it
      try {
        w->deque.push(node);  // throws only if growing the deque fails to allocate
      } catch (...) {
        m_resolved_outside_workers.fetch_add(1, std::memory_order_release);  // the caller discards
        throw;
      }
      m_idle.notify_one();
      return;
    }
    producer& p = local_producer();
    // [X2] seq_cst; pairs with [X1]/[X3] in shutdown().
    p.busy.store(true, std::memory_order_seq_cst);
    if (m_phase.load(std::memory_order_seq_cst) != phase::running) {
      p.busy.store(false, std::memory_order_relaxed);
      throw rejected("offload: executor is shut down; submission rejected");
    }
    p.submitted.add();  // counted before the task is visible: completed never exceeds submitted
    bool queued = false;
    try {
      queued = m_inbox.enqueue(p.token, node);
    } catch (...) {
    }
    if (!queued) {  // out of memory: the caller discards the task, so count it as resolved
      m_resolved_outside_workers.fetch_add(1, std::memory_order_release);
      p.busy.store(false, std::memory_order_release);
      throw std::bad_alloc();
    }
    // [X4] release; pairs with [X3]: shutdown sees the enqueue once it sees the flag clear.
    p.busy.store(false, std::memory_order_release);
    m_idle.notify_one();
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
        m_producers.push_back(std::make_unique<producer>(m_inbox));
        found = m_producers.back().get();
        found->thread = me;
      }
    }
    cache[next_victim++ % 4] = {m_uid, found};
    return *found;
  }

  /// True once shutdown(cancel) began: found tasks are discarded (futures resolved), not run.
  bool cancelling() const noexcept { return m_discard_queued.load(std::memory_order_relaxed); }

  /// Finds a task for worker w: own deque (LIFO), injection queue, then stealing.
  detail::task_node* find_task(detail::worker& w) {
    detail::task_node* node = nullptr;
    if (++w.ticks % k_inbox_interval == 0 && m_inbox.try_dequeue(w.inbox_token, node))
      return node;
    if (auto local = w.deque.pop())
      return *local;
    if (m_inbox.try_dequeue(w.inbox_token, node))
      return node;
    return steal(w);
  }

  detail::task_node* steal(detail::worker& w) {
    const auto n = static_cast<std::uint32_t>(m_workers.size());
    if (n < 2)
      return nullptr;
    const std::uint32_t start = w.rng.next() % n;
    for (std::uint32_t i = 0; i < n; ++i) {
      detail::worker& victim = *m_workers[(start + i) % n];
      if (&victim == &w)
        continue;
      for (int attempt = 0; attempt < k_steal_attempts; ++attempt) {
        auto r = victim.deque.steal();
        if (r.status == detail::steal_status::success) {
          w.counters.steals.add();
          return r.value;
        }
        if (r.status == detail::steal_status::empty)
          break;
      }
    }
    return nullptr;
  }

  /// Runs (or, while cancelling, discards) one task on worker w.
  void execute(detail::worker& w, detail::task_node* node) {
    if (cancelling()) {
      detail::discard_task(node, detail::discard_reason::shutdown);
    } else {
      try {
        detail::run_task(node);
      } catch (...) {
        w.counters.failed.add();
        report_detached_failure(std::current_exception());
      }
    }
    w.counters.completed.add();
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
      if ((i & 7) == 7 && std::chrono::steady_clock::now() >= until)
        return nullptr;
    }
  }

  void run_worker(detail::worker& w) {
    detail::tl_current_scheduler = this;
    tl_worker = &w;
    for (;;) {
      if (detail::task_node* node = find_task(w)) {
        execute(w, node);
        continue;
      }
      m_quiet.notify_all();  // out of work: a wait_idle() caller may be waiting for this moment
      if (detail::task_node* node = spin_for_task(w)) {
        execute(w, node);
        continue;
      }
      auto key = m_idle.prepare_wait();
      if (detail::task_node* node = find_task(w)) {
        m_idle.cancel_wait();
        execute(w, node);
        continue;
      }
      if (m_phase.load(std::memory_order_acquire) == phase::stopped) {
        m_idle.cancel_wait();
        break;
      }
      w.counters.parks.add();
      m_idle.commit_wait(key);
    }
    tl_worker = nullptr;
    detail::tl_current_scheduler = nullptr;
  }

  void help_until(const std::function<bool()>& done) override {
    detail::worker& w = *current_worker();
    auto nap = std::chrono::microseconds(50);
    unsigned idle = 0;
    while (!done()) {
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
  }

  /// Σ completed == Σ submitted, read completed-first: counters only grow and a task is counted
  /// as submitted before it can complete, so equality means idle at some instant during the call.
  bool quiescent() const {
    std::uint64_t completed = m_resolved_outside_workers.load(std::memory_order_acquire);
    for (const auto& w : m_workers) completed += w->counters.completed.read();
    std::uint64_t submitted = 0;
    for (const auto& w : m_workers) submitted += w->counters.submitted.read();
    std::lock_guard lock(m_producers_mutex);
    for (const auto& p : m_producers) submitted += p->submitted.read();
    return completed == submitted;
  }

  /// After the workers joined: resolves whatever is still queued (cancel mode, or a race).
  void discard_leftovers() {
    std::uint64_t n = 0;
    for (auto& w : m_workers) {
      while (auto node = w->deque.pop()) {
        detail::discard_task(*node, detail::discard_reason::shutdown);
        ++n;
      }
    }
    detail::task_node* node = nullptr;
    while (m_inbox.try_dequeue(node)) {
      detail::discard_task(node, detail::discard_reason::shutdown);
      ++n;
    }
    m_resolved_outside_workers.fetch_add(n, std::memory_order_release);
    m_quiet.notify_all();
  }

  static inline thread_local detail::worker* tl_worker = nullptr;

  executor_options m_options;
  std::uint64_t m_uid;  // distinguishes executors in threads' producer caches
  moodycamel::ConcurrentQueue<detail::task_node*> m_inbox;
  std::vector<std::unique_ptr<detail::worker>> m_workers;
  detail::event_count m_idle;   // workers (and helping waiters) sleep here
  detail::event_count m_quiet;  // wait_idle() callers sleep here
  alignas(detail::k_cache_line) std::atomic<phase> m_phase{phase::running};
  std::atomic<bool> m_discard_queued{false};  // set once by shutdown(cancel)
  // Tasks counted as submitted but resolved by no worker: discarded after the workers stopped, or
  // refused by an allocation failure after being counted.
  std::atomic<std::uint64_t> m_resolved_outside_workers{0};
  mutable std::mutex m_producers_mutex;  // slow path: registering a producer, stats, shutdown
  std::vector<std::unique_ptr<producer>> m_producers;
  std::mutex m_shutdown_mutex;
};

}  // namespace offload
