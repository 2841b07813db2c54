#pragma once

/// @file task_group.hpp
/// @brief offload::task_group: fork-join over an executor.

#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <utility>

#include "offload/detail/event_count.hpp"
#include "offload/detail/scheduler.hpp"
#include "offload/error.hpp"
#include "offload/executor.hpp"
#include "offload/task_options.hpp"
#include "offload/this_task.hpp"

namespace offload {

/// Runs tasks on an executor and waits for all of them.
///
/// run() spawns a task (onto the calling worker's own deque when called from a task, which is
/// what makes recursive fork-join cheap); wait() blocks until every task run so far finished.
/// Called from a task, it first runs the group's tasks still on the worker's own deque, then
/// suspends the task's fiber (executor_options::fibers; without fibers it helps run other queued
/// work while its stack has room), so nested groups never deadlock, even on one worker. Any number
/// of tasks and threads may wait on one group at once. The first exception thrown by a task is
/// rethrown by one wait() (the first to return after it); later ones are dropped. A task dropped
/// by shutdown(shutdown_mode::cancel) counts as failed with offload::cancelled. Everything the
/// tasks did, including destroying their callables, happens-before wait() returns. The group may
/// be destroyed once every wait() on it has returned; the destructor waits (and swallows the
/// exception) if wait() was not called. run(), wait() and cancel() may be called from any thread.
///
/// cancel() is oneTBB's task_group::cancel(): tasks not started yet never run, running ones see
/// this_task::stop_requested() (a group opened inside one of them is not cancelled with it: the
/// task stops it), and wait() throws offload::cancelled once the running ones ended.
class task_group {
 public:
  explicit task_group(executor& ex) noexcept : m_executor(ex) {}

  /// A group on the executor running the calling task (this_task::executor()). Throws
  /// std::logic_error outside a task of an executor.
  task_group() : m_executor(current_executor()) {}
  task_group(const task_group&) = delete;
  task_group& operator=(const task_group&) = delete;

  ~task_group() {
    try {
      wait();
    } catch (...) {  // wait() was not called by the owner: nobody is left to take the exception
    }
  }

  /// Spawns `fn()`. Throws offload::rejected if the executor no longer accepts work.
  template <class F>
  void run(F&& fn) {
    spawn(std::forward<F>(fn), nullptr);
  }

  /// Spawns `fn()` in `options.lane` under `options.name`, its lane's capacity applying as for
  /// executor::post(options, ...). Throws std::invalid_argument for options a group task does
  /// not take (retry, delay, deadline, key, rate: a group waits for tasks, not for attempts).
  template <class F>
  void run(const task_options& options, F&& fn) {
    options.validate();
    if (options.needs_policy()) {
      throw std::invalid_argument(
          "offload::task_group::run: task_options.retry, delay, deadline, key and rate are not "
          "supported for group tasks");
    }
    spawn(std::forward<F>(fn), &options);
  }

  /// Cancels the group: tasks not started never run (their callables are destroyed), running ones
  /// see this_task::stop_requested(), and so do later run() calls' tasks. The group stays
  /// cancelled. Thread-safe; never blocks.
  void cancel() noexcept {
    // relaxed: a flag carrying no data (see task_context::stop_requested()).
    m_cancelled.store(true, std::memory_order_relaxed);
  }

  /// True once cancel() was called.
  bool is_cancelled() const noexcept { return m_cancelled.load(std::memory_order_relaxed); }

  /// Waits for every task run so far; rethrows the first exception, then forgets it; else, if
  /// the group was cancelled, throws offload::cancelled.
  void wait() {
    if (pending() != 0) {
      if (detail::scheduler* s = detail::tl_current_scheduler) {
        wait_in_worker(*s);
      } else {
        block();
      }
    }
    if (m_has_error.load(std::memory_order_acquire)) {  // pairs with the release in record()
      std::exception_ptr e;
      {
        std::lock_guard lock(m_error_mutex);
        e = std::exchange(m_error, nullptr);
        m_has_error.store(false, std::memory_order_relaxed);
      }
      if (e)
        std::rethrow_exception(e);
    }
    if (is_cancelled())
      throw offload::cancelled("offload: task_group cancelled");
  }

 private:
  static constexpr std::uint32_t k_blocked = 0x8000'0000u;  // a thread may sleep in block()
  static constexpr std::uint32_t k_fiber = 0x4000'0000u;    // m_waiters is not empty
  static constexpr std::uint32_t k_count = ~(k_blocked | k_fiber);

  template <class F>
  struct group_task {
    task_group* group;
    std::optional<F> fn;
    task_outcome operator()() {
      if (group->is_cancelled()) {
        fn.reset();
        group->finish_one();
        return task_outcome::cancelled;
      }
      task_outcome outcome = task_outcome::succeeded;
      try {
        const detail::task_context_scope context({nullptr, 1, &group->m_cancelled});
        (*fn)();
      } catch (...) {
        std::exception_ptr e = std::current_exception();
        detail::note_failure(e);  // before wait() can see it
        group->record(std::move(e));
        outcome = task_outcome::failed;
      }
      fn.reset();  // captures are destroyed before wait() can return
      group->finish_one();
      return outcome;
    }
    void discard(detail::discard_reason why) noexcept {
      if (why == detail::discard_reason::shutdown) {  // run() already threw for `rejected`
        group->record(std::make_exception_ptr(
            offload::cancelled("offload: task_group task cancelled by executor shutdown")));
      }
      group->finish_one();
    }
  };

  static executor& current_executor() {
    executor* ex = this_task::executor();
    if (ex == nullptr)
      throw std::logic_error("offload::task_group(): called outside a task (no executor to use)");
    return *ex;
  }

  template <class F>
  void spawn(F&& fn, const task_options* options) {
    // Built first: if building throws (allocation, the callable's copy), nothing was counted.
    detail::task_node* node =
        detail::make_task(group_task<std::decay_t<F>>{this, std::forward<F>(fn)});
    // relaxed: the task that decrements is published to its worker by the queue's ordering.
    m_state.fetch_add(1, std::memory_order_relaxed);
    m_executor.enqueue(node,
                       options);  // on failure the node is discarded: discard() calls finish_one()
  }

  std::uint32_t pending() const noexcept {
    // [G3] acquire; pairs with [G2]: the finished tasks' effects are visible once count is 0.
    return m_state.load(std::memory_order_acquire) & k_count;
  }

  void record(std::exception_ptr e) noexcept {
    std::lock_guard lock(m_error_mutex);  // failure path only
    if (!m_error)
      m_error = std::move(e);
    m_has_error.store(true, std::memory_order_release);
  }

  /// A task finished. The last one to finish wakes the waiters: a thread blocked in block()
  /// (k_blocked) and every suspended fiber in the list (k_fiber). Its accesses to *this all come
  /// before it resumes a listed fiber, and without a listed fiber its last access is the RMW
  /// itself, so a waiter may destroy the group once every wait() has returned.
  void finish_one() noexcept {
    // [G2] acq_rel RMW: release pairs with [G3]/[G4]/[G5]; RMWs on one word are totally
    // ordered, so either this sees k_blocked / k_fiber (and wakes) or the waiter's fetch_or
    // [G4]/[G5] sees the count at 0.
    const std::uint32_t prev = m_state.fetch_sub(1, std::memory_order_acq_rel);
    if ((prev & k_count) != 1)
      return;
    fiber_waiter* list = nullptr;
    if ((prev & k_fiber) != 0) {
      std::lock_guard lock(m_waiters_mutex);
      list = std::exchange(m_waiters, nullptr);
      // Under the mutex, k_fiber is set exactly while the list is not empty.
      m_state.fetch_and(~k_fiber, std::memory_order_relaxed);
    }
    if ((prev & k_blocked) != 0)
      detail::futex_wake(m_state, INT32_MAX);
    while (list != nullptr) {
      // Read before the wake-up: the resumed fiber may return and end the node's life at once.
      fiber_waiter* next = list->next;
      detail::fiber_wake_list::make_ready(list->suspended);
      list = next;
    }
  }

  /// A suspended waiter, on its own fiber's stack; listed under m_waiters_mutex.
  struct fiber_waiter {
    detail::fiber_handle* suspended = nullptr;
    fiber_waiter* next = nullptr;
  };

  /// wait() on a worker: runs what is left on the worker's own deque, then suspends.
  void wait_in_worker(detail::scheduler& s) {
    struct arm_group final : detail::suspend_arm {
      task_group* group;
      fiber_waiter self;
      explicit arm_group(task_group* g) noexcept : group(g) {}
      void arm(detail::fiber_handle* suspended) noexcept override {
        self.suspended = suspended;
        bool resume_now = false;
        {
          std::lock_guard lock(group->m_waiters_mutex);
          self.next = group->m_waiters;
          group->m_waiters = &self;
          // [G5] acq_rel; pairs with [G2]: a finisher that takes the count to 0 sees k_fiber
          // (and then takes the list, with this waiter in it, under the mutex), or this sees the
          // count already at 0 and takes itself back out.
          const std::uint32_t prev = group->m_state.fetch_or(k_fiber, std::memory_order_acq_rel);
          resume_now = (prev & k_count) == 0;
          if (resume_now) {
            group->m_waiters = self.next;  // still the head: the mutex is held
            if (group->m_waiters == nullptr)
              group->m_state.fetch_and(~k_fiber, std::memory_order_relaxed);
          }
        }
        if (resume_now)
          detail::fiber_wake_list::make_ready(suspended);
      }
    } arm{this};
    while (pending() != 0) {
      if (s.run_local_task())
        continue;
      if (s.suspend(arm))
        continue;  // resumed: the count reached 0 (or a later run() made it pending again)
      if (!s.help_until([this] {
            return pending() == 0;
          })) {
        detail::refuse_wait();
      }
      return;
    }
  }

  void block() {
    for (int i = 0; i < 2000; ++i) {
      if (pending() == 0)
        return;
      detail::cpu_relax();
    }
    // k_blocked stays set once a thread has blocked: later drains to zero then cost a wake-up
    // syscall, which keeps the protocol to one word and the finisher's last access to one RMW.
    // [G4] acq_rel; pairs with [G2].
    std::uint32_t state = m_state.fetch_or(k_blocked, std::memory_order_acq_rel) | k_blocked;
    while ((state & k_count) != 0) {
      detail::futex_wait(m_state, state);
      state = m_state.load(std::memory_order_acquire);  // [G3]
    }
  }

  executor& m_executor;
  std::atomic<std::uint32_t> m_state{0};  // k_count bits: tasks not finished; futex word
  std::mutex m_waiters_mutex;             // the wait path and the last finisher only
  fiber_waiter* m_waiters = nullptr;      // suspended waiters; guarded by m_waiters_mutex
  std::atomic<bool> m_cancelled{false};   // cancel() was called
  std::atomic<bool> m_has_error{false};
  std::mutex m_error_mutex;
  std::exception_ptr m_error;
};

}  // namespace offload
