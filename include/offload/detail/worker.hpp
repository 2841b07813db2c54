#pragma once

/// @file worker.hpp
/// @brief Per-worker state: the work-stealing deque, the injection-queue consumer token, the
/// victim-selection RNG and the worker's own counters.

#include <atomic>
#include <cstdint>
#include <thread>

#include <concurrentqueue/concurrentqueue.h>

#include "offload/detail/atomic.hpp"
#include "offload/detail/chase_lev_deque.hpp"
#include "offload/detail/task.hpp"

namespace offload::detail {

/// A counter with a single writer, read by anyone: the writer never issues an RMW, so counting
/// costs a plain store to a line only the writer writes.
class owned_counter {
 public:
  /// Writer thread only.
  void add(std::uint64_t n = 1) noexcept {
    // [C1] release; pairs with the acquire in read() [C2]: a reader that sees the count also sees
    // what the writer did before counting (e.g. the task's side effects).
    m_value.store(m_value.load(std::memory_order_relaxed) + n, std::memory_order_release);
  }
  /// Any thread. The value is monotonic; a snapshot of several counters is not atomic.
  std::uint64_t read() const noexcept { return m_value.load(std::memory_order_acquire); }  // [C2]

 private:
  std::atomic<std::uint64_t> m_value{0};
};

/// Counters of one worker; written only by that worker.
struct worker_counters {
  owned_counter submitted;  ///< tasks this worker pushed to its own deque
  owned_counter completed;  ///< tasks it ran to completion (or skipped as cancelled, or discarded)
  owned_counter failed;     ///< fire-and-forget tasks that threw
  owned_counter steals;     ///< tasks taken from another worker's deque
  owned_counter parks;      ///< times it went to sleep
};

/// Small, fast PRNG for victim selection (xorshift32); owner thread only.
class xorshift32 {
 public:
  explicit xorshift32(std::uint32_t seed) noexcept : m_state(seed == 0 ? 0x9e3779b9u : seed) {}
  std::uint32_t next() noexcept {
    m_state ^= m_state << 13;
    m_state ^= m_state >> 17;
    m_state ^= m_state << 5;
    return m_state;
  }

 private:
  std::uint32_t m_state;
};

/// One worker thread's state. The deque is owned by the worker thread.
struct worker {
  worker(unsigned idx, std::int64_t deque_capacity, moodycamel::ConcurrentQueue<task_node*>& inbox)
      : index(idx), deque(deque_capacity), inbox_token(inbox), rng(0x2545F491u * (idx + 1)) {}

  unsigned index;
  chase_lev_deque<task_node*> deque;
  moodycamel::ConsumerToken inbox_token;  // owner only
  xorshift32 rng;                         // owner only
  std::uint32_t ticks = 0;                // owner only: task searches, for inbox fairness
  alignas(k_cache_line) worker_counters counters;
  std::thread thread;
};

}  // namespace offload::detail
