#pragma once

/// @file manual_reset_event.hpp
/// @brief offload::manual_reset_event: an event whose wait() suspends a waiting task, not
/// its worker.

#include <mutex>

#include "offload/detail/waiter.hpp"

namespace offload {

/// A manual-reset event. wait() returns once the event is set; inside a task on a worker
/// (executor_options::fibers) it suspends the task's fiber and the worker runs other work, on
/// other threads it blocks. set() releases every waiter and keeps the event set until reset().
/// What the setter did before set() happens-before wait() returns.
class manual_reset_event {
 public:
  manual_reset_event() = default;
  manual_reset_event(const manual_reset_event&) = delete;
  manual_reset_event& operator=(const manual_reset_event&) = delete;

  void set() {
    detail::waiter* all = nullptr;
    {
      std::lock_guard guard(m_guard);
      m_set = true;
      all = m_waiters.take_all();
    }
    while (all != nullptr) {
      detail::waiter* next = all->next;  // read first: wake() may end the waiter's life
      all->wake();
      all = next;
    }
  }

  void reset() {
    std::lock_guard guard(m_guard);
    m_set = false;
  }

  bool is_set() {
    std::lock_guard guard(m_guard);
    return m_set;
  }

  void wait() {
    detail::wait_as_task_or_thread([this](detail::waiter* w) {
      std::lock_guard guard(m_guard);
      if (m_set)
        return true;
      m_waiters.push(w);
      return false;
    });
  }

 private:
  std::mutex m_guard;  // held for a few instructions, never across a wait
  bool m_set = false;
  detail::waiter_list m_waiters;
};

}  // namespace offload
