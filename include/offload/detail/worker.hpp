#pragma once

/// @file worker.hpp
/// @brief Per-worker state: the work-stealing deque, the injection-queue consumer token, the
/// victim-selection RNG and the worker's own counters.

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include <concurrentqueue/concurrentqueue.h>

#include "offload/detail/atomic.hpp"
#include "offload/detail/chase_lev_deque.hpp"
#include "offload/detail/fiber.hpp"
#include "offload/detail/histogram.hpp"
#include "offload/detail/task_node.hpp"
#include "offload/lane.hpp"
#include "offload/task_events.hpp"

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

/// One thread's counters for one lane. Single writer (the owning worker or producer thread).
/// A task is counted submitted, then taken, then completed, each before the next is visible, so
/// readers that read completed, then taken, then submitted see completed <= taken <= submitted.
struct lane_counters {
  owned_counter submitted;  ///< accepted (producer: injected; worker: pushed to its own deque)
  owned_counter rejected;   ///< refused at submission
  owned_counter taken;      ///< workers only: taken off a queue to run or skip
  std::array<owned_counter, k_outcome_count> completed;  ///< workers only, by task_outcome
  owned_counter retried;   ///< workers only: attempts that failed and went to a retry timer
  owned_counter deferred;  ///< workers only: starts put off to wait in the timer for a rate token
  owned_histogram wait;    ///< workers only: enqueue → start
  owned_histogram run;     ///< workers only: start → end
  /// Workers only: enqueue time of the task of this lane it took most recently (0: none).
  std::atomic<std::uint64_t> last_taken_enqueued_ns{0};

  /// Tasks taken and finished (any outcome, a retry or a deferral). Any thread.
  std::uint64_t finished() const noexcept {
    std::uint64_t n = retried.read() + deferred.read();
    for (const auto& c : completed) n += c.read();
    return n;
  }
  /// Tasks running now (nested waits included): taken - finished, derived so that the worker
  /// writes no gauge per task. Reads finished first: each is counted after taken ([C1]/[C2]).
  std::uint64_t running() const noexcept {
    const std::uint64_t done = finished();
    const std::uint64_t started = taken.read();
    return started > done ? started - done : 0;
  }
};

/// Counters of one worker; written only by that worker.
struct worker_counters {
  std::array<lane_counters, k_lane_count> lanes;
  owned_counter failed;  ///< fire-and-forget tasks that threw
  owned_counter steals;  ///< tasks taken from another worker's deque
  owned_counter parks;   ///< times it went to sleep
  std::atomic<bool> alive{
      false};  ///< set when the worker is created, cleared when its thread exits

  /// Tasks taken and finished, all lanes. Any thread.
  std::uint64_t finished() const noexcept {
    std::uint64_t n = 0;
    for (const auto& l : lanes) n += l.finished();
    return n;
  }
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

static_assert(k_lane_count == 4, "worker and producer constructors list one entry per lane");

/// The injection queues, one per lane.
using lane_inboxes = std::array<moodycamel::ConcurrentQueue<task_node*>, k_lane_count>;

/// One worker thread's state. The deques are owned by the worker thread.
struct worker {
  worker(unsigned idx, std::int64_t deque_capacity, lane_inboxes& inboxes)
      : index(idx),
        deques{std::make_unique<chase_lev_deque<task_node*>>(deque_capacity),
               std::make_unique<chase_lev_deque<task_node*>>(deque_capacity),
               std::make_unique<chase_lev_deque<task_node*>>(deque_capacity),
               std::make_unique<chase_lev_deque<task_node*>>(deque_capacity)},
        inbox_tokens{moodycamel::ConsumerToken(inboxes[0]),
                     moodycamel::ConsumerToken(inboxes[1]),
                     moodycamel::ConsumerToken(inboxes[2]),
                     moodycamel::ConsumerToken(inboxes[3])},
        rng(0x2545F491u * (idx + 1)) {}

  chase_lev_deque<task_node*>& deque(std::size_t lane) noexcept { return *deques[lane]; }

  /// Tasks suspended in a wait on this worker (their fibers); any thread.
  std::uint32_t suspended() const noexcept { return fibers ? fibers->suspended() : 0; }

  unsigned index;
  std::array<std::unique_ptr<chase_lev_deque<task_node*>>, k_lane_count> deques;  // by lane
  std::array<moodycamel::ConsumerToken, k_lane_count> inbox_tokens;               // owner only
  xorshift32 rng;                                                                 // owner only
  std::vector<unsigned> steal_order;  // victims nearest first (placement); empty: random
  std::uint32_t ticks = 0;            // owner only: task searches, for inbox fairness
  std::uint32_t picks_to_guard = 1;   // owner only: tasks to take until a guard pick, set
                                      // by the executor (a countdown: no division per search)
  std::uint32_t guard_turn = 0;       // owner only: which lower lane the guard serves next
  std::uint32_t timing_tick = 0;      // owner only: spawned tasks, for timing samples
  offload::lane current_lane = offload::lane::normal;  // owner only: lane of the running task
  std::uint32_t fiber_depth = 0;  // owner only: tasks running on the current fiber (nested)
  // Owner-written, read by health(): tasks on fibers suspended in a wait, nested ones included.
  std::atomic<std::uint32_t> suspended_frames{0};
  std::unique_ptr<fiber_runtime> fibers;  // null: fibers off (waits block the worker)
  stack_bounds thread_stack;              // owner only: the worker thread's own stack
  alignas(k_cache_line) worker_counters counters;
  std::thread thread;
};

}  // namespace offload::detail
