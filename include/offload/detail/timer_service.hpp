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
#include <unordered_map>
#include <utility>
#include <vector>

#include "offload/clock.hpp"
#include "offload/config.hpp"
#include "offload/detail/saturating_time.hpp"
#include "offload/detail/scheduler.hpp"
#include "offload/detail/shared_state.hpp"
#include "offload/detail/task_node.hpp"
#include "offload/lane.hpp"

namespace offload::detail {

/// What a timer entry does when it comes due.
enum class timer_kind : std::uint8_t {
  start,   ///< a delayed task or a retry: hand the node to the executor's queues
  inline_  ///< a small action (a deadline's expiry): run the node on the timer thread
};

/// A heap of (due time, node) serviced by one thread. Timed work is a slow path: a mutex guards
/// the heap. An entry may have an owner (a future's state, a sleeping task, a periodic
/// schedule): remove_owned() then takes it back in O(log n), so that a cancelled or finished task
/// releases its node (and what its callable captured) at once, not at its due time. Thread-safe.
class timer_service {
 public:
  /// `fire` receives due `start` nodes on the timer thread and must not throw. Continuations
  /// that an inline action's effects release (a deadline's expiry resolving a future) and that
  /// run user code are handed to `workers` rather than run on the timer thread (see
  /// continuation_sink).
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

  /// now() + d, saturated (see saturating_add()).
  clock::time_point after(clock::duration d) const noexcept { return saturating_add(now(), d); }

  /// Adds a node due at `due` (clock::time_point::max(): never, until removed or stopped).
  /// Returns false (and keeps nothing) once stopped. `from_retry` only sorts the counts. With an
  /// `owner`, remove_owned(owner, kind) can take it back; an owner has at most one entry of each
  /// kind at a time. Throws std::bad_alloc or std::system_error (thread start).
  bool schedule(clock::time_point due,
                task_node* node,
                timer_kind kind,
                bool from_retry,
                const void* owner = nullptr) {
    std::unique_lock lock(m_mutex);
    if (m_stopped || (kind == timer_kind::start && m_starts_stopped))
      return false;
    if (!m_thread.joinable()) {
      m_thread = std::thread([this] {
        run();
      });
    }
    if (owner != nullptr) {
      [[maybe_unused]] const bool fresh =
          m_owned.emplace(owner_key{owner, kind}, m_heap.size()).second;
      OFFLOAD_ASSERT(fresh, "an owner has one timer entry of each kind at a time");
    }
    const bool earliest = m_heap.empty() || due < m_heap.front().due;
    try {
      m_heap.push_back(entry{due, m_next_seq++, node, owner, kind});
    } catch (...) {
      if (owner != nullptr)
        m_owned.erase(owner_key{owner, kind});
      throw;
    }
    sift_up(m_heap.size() - 1);
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

  /// Takes back the entry of `owner` and `kind` if it has not come due yet; returns its node,
  /// which is then the caller's, or null. O(log pending).
  task_node* remove_owned(const void* owner, timer_kind kind) {
    std::lock_guard lock(m_mutex);
    auto it = m_owned.find(owner_key{owner, kind});
    if (it == m_owned.end())
      return nullptr;
    const std::size_t pos = it->second;
    m_owned.erase(it);
    task_node* node = m_heap[pos].node;
    if (kind == timer_kind::start)
      m_dropped[index_of(node->lane)]++;
    erase_at(pos);
    return node;
  }

  /// Entries pending now (for tests and metrics).
  std::size_t pending() const {
    std::lock_guard lock(m_mutex);
    return m_heap.size();
  }

  /// First step of shutdown: hands every pending start entry to `resolve` and refuses new ones,
  /// while inline entries (deadlines, sleeping tasks' wake-ups) keep being serviced until stop().
  void stop_starts(const std::function<void(task_node*)>& resolve) {
    std::vector<task_node*> left;
    {
      std::lock_guard lock(m_mutex);
      m_starts_stopped = true;
      std::vector<entry> kept;
      for (const entry& e : m_heap) {
        if (e.kind == timer_kind::start) {
          left.push_back(e.node);
          m_dropped[index_of(e.node->lane)]++;
          if (e.owner != nullptr)
            m_owned.erase(owner_key{e.owner, e.kind});
        } else {
          kept.push_back(e);
        }
      }
      m_heap.clear();
      for (const entry& e : kept) {
        m_heap.push_back(e);
        sift_up(m_heap.size() - 1);
      }
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
        left.push_back(pop_front());
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
    const void* owner;  // null: not removable
    timer_kind kind;
    bool before(const entry& o) const noexcept { return due != o.due ? due < o.due : seq < o.seq; }
  };
  struct owner_key {
    const void* owner;
    timer_kind kind;
    bool operator==(const owner_key&) const = default;
  };
  struct owner_hash {
    std::size_t operator()(const owner_key& k) const noexcept {
      return std::hash<const void*>{}(k.owner) ^ static_cast<std::size_t>(k.kind);
    }
  };

  // A binary min-heap on (due, seq) in m_heap, which keeps m_owned (owner → position) current as
  // entries move. Caller holds m_mutex.
  void place(std::size_t pos, const entry& e) {
    m_heap[pos] = e;
    if (e.owner != nullptr)
      m_owned.find(owner_key{e.owner, e.kind})->second = pos;
  }
  void sift_up(std::size_t pos) {
    const entry e = m_heap[pos];
    while (pos > 0) {
      const std::size_t parent = (pos - 1) / 2;
      if (!e.before(m_heap[parent]))
        break;
      place(pos, m_heap[parent]);
      pos = parent;
    }
    place(pos, e);
  }
  void sift_down(std::size_t pos) {
    const entry e = m_heap[pos];
    const std::size_t n = m_heap.size();
    for (;;) {
      std::size_t child = 2 * pos + 1;
      if (child >= n)
        break;
      if (child + 1 < n && m_heap[child + 1].before(m_heap[child]))
        ++child;
      if (!m_heap[child].before(e))
        break;
      place(pos, m_heap[child]);
      pos = child;
    }
    place(pos, e);
  }
  /// Removes the entry at `pos` (its owner, if any, already forgotten).
  void erase_at(std::size_t pos) {
    const std::size_t last = m_heap.size() - 1;
    if (pos != last) {
      const entry moved = m_heap[last];
      m_heap.pop_back();
      place(pos, moved);
      if (pos > 0 && moved.before(m_heap[(pos - 1) / 2])) {
        sift_up(pos);
      } else {
        sift_down(pos);
      }
    } else {
      m_heap.pop_back();
    }
  }
  /// Removes and returns the earliest entry, forgetting its owner.
  entry pop_front() {
    const entry e = m_heap.front();
    if (e.owner != nullptr)
      m_owned.erase(owner_key{e.owner, e.kind});
    erase_at(0);
    return e;
  }

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
        } else if (due == clock::time_point::max()) {
          m_wake.wait(lock);  // never due: wait for an earlier entry or the stop
        } else {
          m_wake.wait_until(lock, due);
        }
        continue;
      }
      const entry e = pop_front();
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
  std::vector<entry> m_heap;                                       // a min-heap on (due, seq)
  std::unordered_map<owner_key, std::size_t, owner_hash> m_owned;  // positions of owned entries
  std::uint64_t m_next_seq = 1;
  bool m_stopped = false;
  bool m_starts_stopped = false;  // stop_starts() ran: start entries are refused
  std::array<std::uint64_t, k_lane_count> m_in_delay{}, m_in_retry{}, m_fired{}, m_dropped{};
  std::size_t m_subscription = 0;
  std::thread m_thread;
};

}  // namespace offload::detail
