// offload/executor_stats.hpp: executor_stats, what executor::stats() returns.
#pragma once

#include <cstdint>

namespace offload {

/// Aggregate counters of an executor, summed from per-thread counters at the time of the call.
struct executor_stats {
  std::uint64_t submitted = 0;          ///< tasks accepted
  std::uint64_t completed = 0;          ///< tasks finished, skipped as cancelled, or discarded
  std::uint64_t failed_detached = 0;    ///< fire-and-forget tasks that threw
  std::uint64_t steals = 0;             ///< tasks taken from another worker's deque
  std::uint64_t parks = 0;              ///< times a worker went to sleep
  std::uint64_t fibers = 0;             ///< fiber stacks alive now (each worker's, idle or in use)
  std::uint64_t suspended = 0;          ///< tasks suspended in a wait now
  std::uint64_t fiber_stack_bytes = 0;  ///< fibers × executor_options::fiber_stack_size (mapped)
};

}  // namespace offload
