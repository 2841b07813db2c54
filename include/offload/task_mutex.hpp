#pragma once

/// @file task_mutex.hpp
/// @brief offload::task_mutex: a mutex whose lock() suspends a waiting task, not its worker.

#include <mutex>

#include "offload/detail/waiter.hpp"

namespace offload {

/// A mutual-exclusion lock for tasks. Inside a task on a worker (executor_options::fibers),
/// lock() on a held mutex suspends the task's fiber and the worker runs other work; on other
/// threads it blocks. Ownership passes to waiters in FIFO order (no barging), so no waiter
/// starves. Meets the Lockable requirements (std::lock_guard, std::unique_lock,
/// std::scoped_lock). Not recursive. A task may unlock on another worker than it locked on (a
/// suspended task resumes on its own worker, so in practice it does not).
class task_mutex {
 public:
  task_mutex() = default;
  task_mutex(const task_mutex&) = delete;
  task_mutex& operator=(const task_mutex&) = delete;

  void lock() {
    if (try_lock())
      return;
    detail::wait_as_task_or_thread([this](detail::waiter* w) {
      std::lock_guard guard(m_guard);
      if (!m_locked) {
        m_locked = true;
        return true;
      }
      m_waiters.push(w);  // unlock() hands the mutex over to it
      return false;
    });
  }

  bool try_lock() {
    std::lock_guard guard(m_guard);
    if (m_locked)
      return false;
    m_locked = true;
    return true;
  }

  /// Precondition: the caller holds the mutex.
  void unlock() {
    detail::waiter* next = nullptr;
    {
      std::lock_guard guard(m_guard);
      next = m_waiters.pop();
      if (next == nullptr)
        m_locked = false;  // else it stays locked: owned by `next` from now on
    }
    if (next != nullptr)
      next->wake();
  }

 private:
  std::mutex m_guard;  // held for a few instructions, never across a wait
  bool m_locked = false;
  detail::waiter_list m_waiters;
};

}  // namespace offload
