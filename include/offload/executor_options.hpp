#pragma once

/// @file executor_options.hpp
/// @brief Configuration of an offload::executor, validated at construction.

#include <array>
#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include <sched.h>  // sched_getaffinity: the default worker count

#include "offload/clock.hpp"
#include "offload/dead_letter.hpp"
#include "offload/lane.hpp"
#include "offload/placement.hpp"
#include "offload/task_events.hpp"

namespace offload {

/// How shutdown() treats work that is queued but not started.
enum class shutdown_mode {
  drain,   ///< run everything already accepted (and what it spawns), then stop
  cancel,  ///< drop queued tasks (their futures throw offload::cancelled); running tasks finish
};

/// What a submission from outside the pool does when its lane is at capacity.
enum class overflow_policy {
  reject,       ///< throw offload::rejected at once
  block,        ///< wait up to lane_options::block_timeout for room, then throw offload::rejected
  caller_runs,  ///< run the task on the submitting thread, before submit() returns
};

/// Limits of one lane.
struct lane_options {
  static constexpr std::size_t unbounded = std::numeric_limits<std::size_t>::max();
  /// Most tasks submitted from outside the pool that may wait in this lane (queued, not yet
  /// taken by a worker). Tasks spawned by running tasks are never refused, so fork-join cannot
  /// deadlock on a full lane. Accepted: 1 to unbounded.
  std::size_t capacity = unbounded;
  overflow_policy overflow = overflow_policy::reject;
  /// How long overflow_policy::block waits for room. Accepted: 0 to 1 hour.
  std::chrono::nanoseconds block_timeout = std::chrono::milliseconds(100);
};

/// Executor configuration: an aggregate for designated initializers. The leading field order is
/// part of the public contract.
struct executor_options {
  /// Worker threads; 0 means one per CPU this process may run on (its affinity mask, as set by
  /// taskset or a cpuset; std::thread::hardware_concurrency() if that cannot be read).
  unsigned workers = 0;
  /// Where workers run: none (the OS decides), compact or scatter (pinned with hwloc, physical
  /// cores before SMT siblings, stealing from the nearest workers first). Built without hwloc,
  /// compact and scatter pin worker i to allowed CPU i mod N and print a note saying so.
  offload::placement placement = offload::placement::none;
  /// How long an idle worker keeps looking for work before it sleeps. Longer keeps latency low
  /// for bursty load at the cost of CPU; 0 sleeps at once. Accepted: 0 to 1 s.
  std::chrono::nanoseconds spin_before_park = std::chrono::microseconds(50);
  /// Initial capacity of each worker's deque (rounded up to a power of two; it grows on demand).
  /// Accepted: 2 to 2^24.
  std::size_t deque_capacity = 256;
  /// Called with the exception of a fire-and-forget task (post). Runs on the worker; must not
  /// throw (an exception from it is swallowed). Unset: the exception is only counted.
  std::function<void(std::exception_ptr)> on_task_error{};
  /// Per-lane limits, indexed by index_of(lane). Default: every lane unbounded.
  std::array<lane_options, k_lane_count> lanes{};
  /// Starvation guard: every starvation_guard-th task a worker takes is a guard pick, which
  /// searches the lanes below critical first, in rotation (high, normal, low; then normal, low,
  /// high; ...). So while a lane below critical has work, each worker takes one of its tasks at
  /// least once per 3 × starvation_guard tasks (G5). Accepted: 2 to 2^20.
  unsigned starvation_guard = 32;
  /// A worker whose current task has run longer than this is reported stuck by health().
  /// Accepted: 1 ms to 24 h.
  std::chrono::nanoseconds stuck_after = std::chrono::seconds(10);
  /// One task in timing_sample_interval, counted per submitting thread, is timed for the queue
  /// wait and run time histograms (counters and gauges are exact for every task). A timed task
  /// costs three clock reads; 1 times every task, at about 40 ns more per task on the machine of
  /// docs/benchmarks.md. Lower it for a pool that runs few tasks and needs more samples.
  /// Accepted: 1 to 65536.
  unsigned timing_sample_interval = 64;
  /// Optional observers of task events; unset hooks cost nothing measurable.
  /// (A prvalue, not `{}`: see task_options::retry.)
  task_hooks hooks = task_hooks();
  /// Bounds of the dead-letter store (executor::dead_letters()).
  dead_letter_options dead_letters{};
  /// Called with each new dead letter, on the worker where the task failed; must not throw.
  std::function<void(const dead_letter&)> on_dead_letter{};
  /// The clock of delays, deadlines and retry timers; null: offload::clock (real time). Tests
  /// pass a manual_clock to make timed behaviour deterministic.
  std::shared_ptr<manual_clock> clock{};
  /// True: every task runs on a pooled fiber (Boost.Context), and a task that waits inside a
  /// worker (future::get(), task_group::wait(), this_task::sleep_for(), task_mutex,
  /// manual_reset_event) suspends its fiber while the worker runs other work. A task that never
  /// waits pays nothing. False: tasks run on the worker threads' stacks and such waits block the
  /// worker (helping run queued work meanwhile).
  bool fibers = true;
  /// Stack size of each fiber, so the stack every task runs on when fibers is true. Pages are
  /// committed as they are touched; a guard page below each stack turns an overflow into a
  /// crash (SIGSEGV) instead of memory corruption. Accepted: 64 KiB to 1 GiB.
  std::size_t fiber_stack_size = std::size_t{1} << 20;

  /// Effective worker count after applying the default.
  unsigned resolved_workers() const noexcept {
    if (workers != 0)
      return workers;
    // The CPUs this process may run on (taskset, cgroup cpusets), not every CPU of the machine.
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (sched_getaffinity(0, sizeof(allowed), &allowed) == 0) {
      const int n = CPU_COUNT(&allowed);
      if (n > 0)
        return static_cast<unsigned>(n);
    }
    const unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1 : hw;
  }

  /// Throws std::invalid_argument naming the first invalid field and its accepted range.
  void validate() const {
    if (workers > k_max_workers) {
      throw std::invalid_argument(
          "offload::executor_options.workers must be in [0, " + std::to_string(k_max_workers) +
          "] (0 = one per CPU this process may run on), got " + std::to_string(workers));
    }
    if (static_cast<unsigned>(placement) > static_cast<unsigned>(offload::placement::scatter)) {
      throw std::invalid_argument(
          "offload::executor_options.placement must be none, compact or scatter, got " +
          std::to_string(static_cast<unsigned>(placement)));
    }
    if (spin_before_park < std::chrono::nanoseconds::zero() ||
        spin_before_park > std::chrono::seconds(1)) {
      throw std::invalid_argument(
          "offload::executor_options.spin_before_park must be in [0, 1s], got " +
          std::to_string(spin_before_park.count()) + "ns");
    }
    if (deque_capacity < 2 || deque_capacity > (std::size_t{1} << 24)) {
      throw std::invalid_argument(
          "offload::executor_options.deque_capacity must be in [2, 16777216], got " +
          std::to_string(deque_capacity));
    }
    for (std::size_t i = 0; i < k_lane_count; ++i) {
      const std::string field =
          "offload::executor_options.lanes[" + std::string(to_string(static_cast<lane>(i))) + "]";
      if (static_cast<unsigned>(lanes[i].overflow) >
          static_cast<unsigned>(overflow_policy::caller_runs)) {
        throw std::invalid_argument(field + ".overflow must be reject, block or caller_runs, got " +
                                    std::to_string(static_cast<int>(lanes[i].overflow)));
      }
      if (lanes[i].capacity == 0) {
        throw std::invalid_argument(field +
                                    ".capacity must be at least 1 (or lane_options::unbounded), "
                                    "got 0");
      }
      if (lanes[i].block_timeout < std::chrono::nanoseconds::zero() ||
          lanes[i].block_timeout > std::chrono::hours(1)) {
        throw std::invalid_argument(field + ".block_timeout must be in [0, 1h], got " +
                                    std::to_string(lanes[i].block_timeout.count()) + "ns");
      }
    }
    if (starvation_guard < 2 || starvation_guard > (1u << 20)) {
      throw std::invalid_argument(
          "offload::executor_options.starvation_guard must be in [2, 1048576], got " +
          std::to_string(starvation_guard));
    }
    if (dead_letters.max_count > 10'000'000) {
      throw std::invalid_argument(
          "offload::executor_options.dead_letters.max_count must be in [0, 10000000], got " +
          std::to_string(dead_letters.max_count));
    }
    if (dead_letters.max_bytes < 4096 || dead_letters.max_bytes > (std::size_t{1} << 40)) {
      throw std::invalid_argument(
          "offload::executor_options.dead_letters.max_bytes must be in [4096, 2^40], got " +
          std::to_string(dead_letters.max_bytes));
    }
    if (dead_letters.max_age < std::chrono::seconds(1) ||
        dead_letters.max_age > std::chrono::hours(24 * 365)) {
      throw std::invalid_argument(
          "offload::executor_options.dead_letters.max_age must be in [1s, 365 days], got " +
          std::to_string(dead_letters.max_age.count()) + "s");
    }
    if (timing_sample_interval < 1 || timing_sample_interval > 65536) {
      throw std::invalid_argument(
          "offload::executor_options.timing_sample_interval must be in [1, 65536], got " +
          std::to_string(timing_sample_interval));
    }
    if (fiber_stack_size < (std::size_t{64} << 10) || fiber_stack_size > (std::size_t{1} << 30)) {
      throw std::invalid_argument(
          "offload::executor_options.fiber_stack_size must be in [65536, 1073741824] bytes, got " +
          std::to_string(fiber_stack_size));
    }
    if (stuck_after < std::chrono::milliseconds(1) || stuck_after > std::chrono::hours(24)) {
      throw std::invalid_argument(
          "offload::executor_options.stuck_after must be in [1ms, 24h], got " +
          std::to_string(stuck_after.count()) + "ns");
    }
  }

  static constexpr unsigned k_max_workers = 4096;
};

}  // namespace offload
