#pragma once

/// @file clock.hpp
/// @brief offload::clock (std::chrono::steady_clock) and manual_clock, the injectable test clock
/// that delays, deadlines and retry timers can run on.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <vector>

namespace offload {

/// The clock of delays, deadlines and retry timers.
using clock = std::chrono::steady_clock;

/// A clock that moves only when told to: pass one in executor_options::clock and the executor's
/// timers (delays, deadlines, retry backoff) follow it instead of the real time, so that tests
/// are deterministic. Starts at clock::now() of its construction. Thread-safe.
class manual_clock {
 public:
  manual_clock() : m_now(clock::now().time_since_epoch().count()) {}

  clock::time_point now() const noexcept {
    return clock::time_point(clock::duration(m_now.load(std::memory_order_acquire)));
  }

  /// Moves the clock forward by `d` (negative values are ignored) and wakes the timers.
  void advance(clock::duration d) {
    if (d > clock::duration::zero()) {
      // release; pairs with the acquire in now(): a timer that sees the new time sees what the
      // advancing thread did before. Saturates at time_point::max().
      clock::rep cur = m_now.load(std::memory_order_relaxed);
      clock::rep next = 0;
      do {
        next = cur > clock::duration::max().count() - d.count() ? clock::duration::max().count()
                                                                : cur + d.count();
      } while (!m_now.compare_exchange_weak(
          cur, next, std::memory_order_release, std::memory_order_relaxed));
    }
    notify();
  }

  /// Registers a callback run after every advance (the executor's timer thread wakes on it).
  /// Returns an id for unsubscribe().
  std::size_t subscribe(std::function<void()> on_advance) {
    std::lock_guard lock(m_mutex);
    m_listeners.emplace_back(++m_next_id, std::move(on_advance));
    return m_next_id;
  }
  void unsubscribe(std::size_t id) {
    std::lock_guard lock(m_mutex);
    std::erase_if(m_listeners, [id](const auto& l) {
      return l.first == id;
    });
  }

 private:
  // Listeners run under the lock, so that unsubscribe() returning means no call is in progress.
  // Lock order: this clock's mutex, then the listener's own (never the reverse).
  void notify() {
    std::lock_guard lock(m_mutex);
    for (auto& l : m_listeners) l.second();
  }

  std::atomic<clock::rep> m_now;
  std::mutex m_mutex;
  std::size_t m_next_id = 0;
  std::vector<std::pair<std::size_t, std::function<void()>>> m_listeners;
};

}  // namespace offload
