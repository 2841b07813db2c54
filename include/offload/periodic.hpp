#pragma once

/// @file periodic.hpp
/// @brief periodic_handle: what executor::schedule_every() returns.

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>

namespace offload {

namespace detail {

/// Shared by a schedule's runs and its handle.
struct periodic_control {
  std::mutex mutex;
  bool cancelled = false;
  bool pending_timer = false;  // the next run waits in the timer (false: none, or the run is on)
  /// Takes the next run back from the timer and resolves it; set by the executor, cleared when
  /// the executor shuts down. Called under `mutex`.
  std::function<void()> unschedule;
  std::uint64_t runs = 0;  // finished runs
};

}  // namespace detail

/// A periodic schedule. Copyable; all copies control the same schedule.
class periodic_handle {
 public:
  periodic_handle() = default;
  explicit periodic_handle(std::shared_ptr<detail::periodic_control> c) : m_control(std::move(c)) {}

  /// Stops the schedule: no run starts after this returns (one already running finishes).
  /// Returns true if this call stopped it, false if it was stopped before (or is empty).
  bool cancel() {
    if (!m_control)
      return false;
    std::lock_guard lock(m_control->mutex);
    if (m_control->cancelled)
      return false;
    m_control->cancelled = true;
    if (std::exchange(m_control->pending_timer, false) && m_control->unschedule)
      m_control->unschedule();
    return true;
  }

  /// True until cancel() (or the executor's shutdown).
  bool active() const {
    if (!m_control)
      return false;
    std::lock_guard lock(m_control->mutex);
    return !m_control->cancelled;
  }

  /// Runs finished so far (each counted once the next run is scheduled).
  std::uint64_t runs() const {
    if (!m_control)
      return 0;
    std::lock_guard lock(m_control->mutex);
    return m_control->runs;
  }

 private:
  std::shared_ptr<detail::periodic_control> m_control;
};

}  // namespace offload
