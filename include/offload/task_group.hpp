#pragma once

/// @file task_group.hpp
/// @brief offload::task_group: fork-join over an executor.

#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <optional>
#include <utility>

#include "offload/detail/event_count.hpp"
#include "offload/detail/scheduler.hpp"
#include "offload/error.hpp"
#include "offload/executor.hpp"

namespace offload {

/// Runs tasks on an executor and waits for all of them.
///
/// run() spawns a task (onto the calling worker's own deque when called from a task, which is
/// what makes recursive fork-join cheap); wait() blocks until every task run so far finished.
/// Called from a task, it first runs the group's tasks still on the worker's own deque, then
/// suspends the task's fiber (executor_options::fibers; without fibers it helps run other queued
/// work), so nested groups never deadlock, even on one worker. One task at a time may wait on a
/// group by suspending; a second concurrent waiter inside the pool helps instead. While a task
/// waits on a group by suspending, no other waiter may destroy the group (its last task still
/// touches it to resume that task). The first
/// exception thrown by a task is rethrown by wait(); later ones are dropped. A task dropped by
/// shutdown(shutdown_mode::cancel) counts as failed with offload::cancelled. Everything the tasks
/// did, including destroying their callables, happens-before wait() returns. The destructor waits
/// (and swallows the exception) if wait() was not called. run() and wait() may be called from any
/// thread.
class task_group {
 public:
  explicit task_group(executor& ex) noexcept : m_executor(ex) {}
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
    // Built first: if building throws (allocation, the callable's copy), nothing was counted.
    detail::task_node* node =
        detail::make_task(group_task<std::decay_t<F>>{this, std::forward<F>(fn)});
    // relaxed: the task that decrements is published to its worker by the queue's ordering.
    m_state.fetch_add(1, std::memory_order_relaxed);
    m_executor.enqueue(node,
                       nullptr);  // on failure the node is discarded: discard() calls finish_one()
  }

  /// Waits for every task run so far; rethrows the first exception, then forgets it.
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
  }

 private:
  static constexpr std::uint32_t k_blocked = 0x8000'0000u;  // a thread may sleep in block()
  static constexpr std::uint32_t k_fiber = 0x4000'0000u;    // m_fiber_waiter is suspended
  static constexpr std::uint32_t k_count = ~(k_blocked | k_fiber);

  template <class F>
  struct group_task {
    task_group* group;
    std::optional<F> fn;
    task_outcome operator()() {
      task_outcome outcome = task_outcome::succeeded;
      try {
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

  /// The last access to *this by a task: after the RMW a waiter may return and destroy the
  /// group, so only the syscall (on the address, not a C++ access) may follow. A suspended fiber
  /// waiter cannot return before this task resumes it, so with one (k_fiber) the record is
  /// taken first. (A thread blocked in wait() at the same time as a suspended task must not
  /// destroy the group: the finisher still touches it after the count reached 0.)
  void finish_one() noexcept {
    // [G2] acq_rel RMW: release pairs with [G3]/[G4]/[G5]; RMWs on one word are totally
    // ordered, so either this sees k_blocked / k_fiber (and wakes) or the waiter's fetch_or
    // [G4]/[G5] sees the count at 0.
    const std::uint32_t prev = m_state.fetch_sub(1, std::memory_order_acq_rel);
    if ((prev & k_count) != 1)
      return;
    detail::fiber* waiter = nullptr;
    if ((prev & k_fiber) != 0) {
      // The mark is cleared before the record is taken: a new waiter can only install itself
      // after the take, so its own mark is never cleared by this finisher.
      m_state.fetch_and(~k_fiber, std::memory_order_relaxed);
      // [G6] acq_rel; pairs with [G7] (and the armer's take-back [G8]): whoever takes the
      // record resumes the waiter, exactly once; the acquire half sees the waiter's record.
      waiter = m_fiber_waiter.exchange(nullptr, std::memory_order_acq_rel);
    }
    if ((prev & k_blocked) != 0)
      detail::futex_wake(m_state, INT32_MAX);
    if (waiter != nullptr)
      detail::fiber_runtime::make_ready(waiter);
  }

  /// wait() on a worker: runs what is left on the worker's own deque, then suspends.
  void wait_in_worker(detail::scheduler& s) {
    struct arm_group final : detail::suspend_arm {
      task_group* group;
      explicit arm_group(task_group* g) noexcept : group(g) {}
      void arm(detail::fiber* suspended) noexcept override {
        detail::fiber* none = nullptr;
        // [G7] acq_rel; pairs with [G6]. Another fiber already waits: resume at once (the
        // waiter then helps instead).
        if (!group->m_fiber_waiter.compare_exchange_strong(
                none, suspended, std::memory_order_acq_rel)) {
          detail::fiber_runtime::make_ready(suspended);
          return;
        }
        // [G5] acq_rel; pairs with [G2]: a finisher that takes the count to 0 sees k_fiber, or
        // this sees the count already at 0 and takes the record back itself.
        const std::uint32_t prev = group->m_state.fetch_or(k_fiber, std::memory_order_acq_rel);
        if ((prev & k_count) == 0) {
          group->m_state.fetch_and(~k_fiber, std::memory_order_relaxed);
          // [G8] acq_rel; pairs with [G6]: the record is taken back here or by a finisher.
          if (group->m_fiber_waiter.exchange(nullptr, std::memory_order_acq_rel) != nullptr)
            detail::fiber_runtime::make_ready(suspended);
        }
      }
    } arm{this};
    while (pending() != 0) {
      if (s.run_local_task())
        continue;
      if (m_fiber_waiter.load(std::memory_order_relaxed) == nullptr && s.suspend(arm))
        continue;  // resumed: the count reached 0, or another fiber was already waiting
      s.help_until([this] {
        return pending() == 0;
      });
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
  std::atomic<detail::fiber*> m_fiber_waiter{nullptr};  // the suspended waiter, if any
  std::atomic<bool> m_has_error{false};
  std::mutex m_error_mutex;
  std::exception_ptr m_error;
};

}  // namespace offload
