#pragma once

/// @file sleep_wake.hpp
/// @brief sleep_wake: ends a task's sleep once, at its due time or when its future is cancelled,
/// whichever comes first.

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <utility>

#include "offload/detail/scheduler.hpp"
#include "offload/detail/shared_state.hpp"
#include "offload/detail/task_node.hpp"

namespace offload::detail {

/// Shared (std::shared_ptr) by a sleeping task and its timer entry, whose owner key it is. The
/// first of fire() — from the timer entry at the due time, from its discard (shutdown), or from
/// the cancellation of the sleeper's future — runs the wake-up action; later ones do nothing.
class sleep_wake : public std::enable_shared_from_this<sleep_wake> {
 public:
  explicit sleep_wake(std::function<void()> wake) noexcept : m_wake(std::move(wake)) {}
  sleep_wake(const sleep_wake&) = delete;
  sleep_wake& operator=(const sleep_wake&) = delete;

  /// Runs the wake-up action if nothing did yet. Any thread.
  void fire() noexcept {
    // acq_rel; pairs with the other callers' exchanges: exactly one sees false.
    if (!m_done.exchange(true, std::memory_order_acq_rel))
      m_wake();
  }

  bool done() const noexcept { return m_done.load(std::memory_order_acquire); }

  /// The timer entry's task: fires when due, and when discarded (the timer stopped).
  struct timer_task {
    std::shared_ptr<sleep_wake> wake;
    void operator()() const noexcept { wake->fire(); }
    void discard(discard_reason) const noexcept { wake->fire(); }
  };

  /// Puts the timer entry (owned by this object) into `sched`'s timer after `d`, and, if the
  /// sleeper is a task with a future (`task` not null), cuts the sleep short when that future is
  /// cancelled. May fire at once (already cancelled, or the timer stopped). Throws
  /// std::bad_alloc (nothing armed).
  void arm(scheduler& sched, clock::duration d, const shared_state_base* task) {
    task_node* node = make_task(timer_task{shared_from_this()});
    if (task != nullptr) {
      try {
        m_on_cancel.emplace(task->stop_token(), on_cancel{this, &sched});  // may fire at once
      } catch (...) {  // no memory for the stop state: the sleep is not cut short
      }
    }
    if (done()) {
      discard_task(node, discard_reason::shutdown);
      return;
    }
    sched.call_after(d, node, this);
    if (done())  // cancelled meanwhile, before the entry existed: take it back
      sched.cancel_call(this);
  }

 private:
  struct on_cancel {
    sleep_wake* self;
    scheduler* sched;
    void operator()() const noexcept {
      self->fire();
      // Then the entry goes (which may drop the last reference to *this: only the key is used).
      sched->cancel_call(self);
    }
  };

  std::atomic<bool> m_done{false};
  std::function<void()> m_wake;
  std::optional<std::stop_callback<on_cancel>> m_on_cancel;
};

}  // namespace offload::detail
