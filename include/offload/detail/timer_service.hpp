#pragma once

/// @file timer_service.hpp
/// @brief The executor's one timer: a min-heap of task nodes due at a time point, serviced by
/// one thread (started at the first timed task), never by a worker.

#include <algorithm>
#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "offload/clock.hpp"
#include "offload/detail/scheduler.hpp"
#include "offload/detail/shared_state.hpp"
#include "offload/detail/task.hpp"
#include "offload/lane.hpp"

namespace offload::detail {

/// What a timer entry does when it comes due.
enum class timer_kind : std::uint8_t {
  start,   ///< a delayed task or a retry: hand the node to the executor's queues
  inline_  ///< a small action (a deadline's expiry): run the node on the timer thread
};

/// A heap of (due time, node) serviced by one thread. Timed work is a slow path: a mutex guards
/// the heap. Thread-safe.
class timer_service {
 public:
  /// `fire` receives due `start` nodes on the timer thread and must not throw. Continuations
  /// that an inline action's effects release (a deadline's expiry resolving a future) are handed
  /// to `workers` rather than run on the timer thread (see continuation_sink).
  timer_service(std::shared_ptr<manual_clock> manual,
                std::function<void(task_node*)> fire,
                scheduler* workers)
      : m_manual(std::move(manual)), m_fire(std::move(fire)), m_workers(workers) {
    if (m_manual) {
      m_subscription = m_manual->subscribe([this] {
        std::lock_guard l(m_mutex);
        m_wake.notify_all();
      });
    }
  }

  timer_service(const timer_service&) = delete;
  timer_service& operator=(const timer_service&) = delete;
  ~timer_service() {
    stop([](task_node* n) {
      discard_task(n, discard_reason::shutdown);
    });
  }

  clock::time_point now() const noexcept { return m_manual ? m_manual->now() : clock::now(); }

  /// Adds a node due at `due`. Returns false (and keeps nothing) once stopped. `from_retry`
  /// only sorts the counts. Throws std::bad_alloc or std::system_error (thread start).
  bool schedule(clock::time_point due,
                task_node* node,
                timer_kind kind,
                bool from_retry,
                std::uint64_t* id = nullptr) {
    std::unique_lock lock(m_mutex);
    if (m_stopped || (kind == timer_kind::start && m_starts_stopped))
      return false;
    if (!m_thread.joinable()) {
      m_thread = std::thread([this] {
        run();
      });
    }
    const bool earliest = m_heap.empty() || due < m_heap.front().due;
    if (id != nullptr)
      *id = m_next_seq;
    m_heap.push_back(entry{due, m_next_seq++, node, kind});
    std::push_heap(m_heap.begin(), m_heap.end(), std::greater<>());
    const std::size_t l = index_of(node->lane);
    if (kind == timer_kind::start)
      (from_retry ? m_in_retry[l] : m_in_delay[l])++;
    if (earliest)
      m_wake.notify_all();
    return true;
  }

  /// Per-lane counts: tasks that entered from submission (delay) and from retries, and tasks
  /// that left (started or resolved). Snapshot under the lock.
  struct counts {
    std::array<std::uint64_t, k_lane_count> in_delay{}, in_retry{}, fired{}, dropped{};
  };
  counts read_counts() const {
    std::lock_guard lock(m_mutex);
    return counts{m_in_delay, m_in_retry, m_fired, m_dropped};
  }

  /// Takes back the entry `id` (from schedule()) if it has not come due yet; returns its node,
  /// which is then the caller's, or null. O(pending): for rare cancellations.
  task_node* remove(std::uint64_t id) {
    std::lock_guard lock(m_mutex);
    auto it = std::find_if(m_heap.begin(), m_heap.end(), [id](const entry& e) {
      return e.seq == id;
    });
    if (it == m_heap.end())
      return nullptr;
    task_node* node = it->node;
    if (it->kind == timer_kind::start)
      m_dropped[index_of(node->lane)]++;
    m_heap.erase(it);
    std::make_heap(m_heap.begin(), m_heap.end(), std::greater<>());
    return node;
  }

  /// First step of shutdown: hands every pending start entry to `resolve` and refuses new ones,
  /// while inline entries (deadlines, sleeping tasks' wake-ups) keep being serviced until stop().
  void stop_starts(const std::function<void(task_node*)>& resolve) {
    std::vector<task_node*> left;
    {
      std::lock_guard lock(m_mutex);
      m_starts_stopped = true;
      auto is_start = [](const entry& e) {
        return e.kind == timer_kind::start;
      };
      for (const entry& e : m_heap) {
        if (is_start(e)) {
          left.push_back(e.node);
          m_dropped[index_of(e.node->lane)]++;
        }
      }
      m_heap.erase(std::remove_if(m_heap.begin(), m_heap.end(), is_start), m_heap.end());
      std::make_heap(m_heap.begin(), m_heap.end(), std::greater<>());
    }
    for (task_node* node : left) resolve(node);
  }

  /// Stops the thread and hands every pending entry to `resolve` (start entries), runs the inline
  /// entries already due and drops the others (a deadline still ahead never expires its task).
  /// Idempotent. No entry is lost: schedule() refuses work once stopped.
  void stop(const std::function<void(task_node*)>& resolve) {
    std::vector<entry> left;
    {
      std::lock_guard lock(m_mutex);
      m_stopped = true;
      m_wake.notify_all();
    }
    if (m_thread.joinable())
      m_thread.join();
    std::size_t subscription = 0;
    {
      std::lock_guard lock(m_mutex);
      subscription = std::exchange(m_subscription, 0);
    }
    if (m_manual && subscription != 0)
      m_manual->unsubscribe(subscription);
    {
      std::lock_guard lock(m_mutex);
      while (!m_heap.empty()) {
        std::pop_heap(m_heap.begin(), m_heap.end(), std::greater<>());
        left.push_back(m_heap.back());
        m_heap.pop_back();
        if (left.back().kind == timer_kind::start)
          m_dropped[index_of(left.back().node->lane)]++;
      }
    }
    const clock::time_point t = now();
    for (const entry& e : left) {
      if (e.kind == timer_kind::start) {
        resolve(e.node);
      } else if (e.due <= t) {
        run_inline(e.node);  // due already (a deadline that has passed): take effect
      } else {
        discard_task(e.node, discard_reason::shutdown);  // not due: the action never happens
      }
    }
  }

 private:
  struct entry {
    clock::time_point due;
    std::uint64_t seq;  // FIFO among equal times
    task_node* node;
    timer_kind kind;
    bool operator>(const entry& o) const noexcept {
      return due != o.due ? due > o.due : seq > o.seq;
    }
  };

  /// Runs a small action; the continuations it releases go to the workers, in its lane.
  void run_inline(task_node* node) noexcept {
    const continuation_sink saved =
        std::exchange(tl_continuation_sink, continuation_sink{m_workers, node->lane});
    try {
      (void)run_task(node);
    } catch (...) {  // inline actions do not throw; be safe
    }
    tl_continuation_sink = saved;
  }

  void run() {
    std::unique_lock lock(m_mutex);
    while (!m_stopped) {
      if (m_heap.empty()) {
        m_wake.wait(lock);
        continue;
      }
      const clock::time_point due = m_heap.front().due;
      const clock::time_point t = now();
      if (due > t) {
        if (m_manual) {
          // Woken by manual_clock::advance(); the timeout is only a safety net.
          m_wake.wait_for(lock, std::chrono::milliseconds(50));
        } else {
          m_wake.wait_until(lock, due);
        }
        continue;
      }
      std::pop_heap(m_heap.begin(), m_heap.end(), std::greater<>());
      const entry e = m_heap.back();
      m_heap.pop_back();
      if (e.kind == timer_kind::start)
        m_fired[index_of(e.node->lane)]++;
      lock.unlock();
      if (e.kind == timer_kind::start) {
        m_fire(e.node);
      } else {
        run_inline(e.node);
      }
      lock.lock();
    }
  }

  std::shared_ptr<manual_clock> m_manual;  // null: the real clock
  std::function<void(task_node*)> m_fire;
  scheduler* m_workers;  // where continuations released on the timer thread run
  mutable std::mutex m_mutex;
  std::condition_variable m_wake;
  std::vector<entry> m_heap;     // a min-heap on (due, seq) through std::push_heap/pop_heap
  std::uint64_t m_next_seq = 1;  // 0 is never an id: callers use it for "none"
  bool m_stopped = false;
  bool m_starts_stopped = false;  // stop_starts() ran: start entries are refused
  std::array<std::uint64_t, k_lane_count> m_in_delay{}, m_in_retry{}, m_fired{}, m_dropped{};
  std::size_t m_subscription = 0;
  std::thread m_thread;
};

}  // namespace offload::detail
