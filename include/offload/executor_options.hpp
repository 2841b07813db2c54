#pragma once

/// @file executor_options.hpp
/// @brief Configuration of an offload::executor, validated at construction.

#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>

namespace offload {

/// How shutdown() treats work that is queued but not started.
enum class shutdown_mode {
  drain,   ///< run everything already accepted (and what it spawns), then stop
  cancel,  ///< drop queued tasks (their futures throw offload::cancelled); running tasks finish
};

/// Executor configuration: an aggregate for designated initializers. The leading field order is
/// part of the public contract.
struct executor_options {
  /// Worker threads; 0 means one per hardware thread (std::thread::hardware_concurrency()).
  unsigned workers = 0;
  /// How long an idle worker keeps looking for work before it sleeps. Longer keeps latency low
  /// for bursty load at the cost of CPU; 0 sleeps at once. Accepted: 0 to 1 s.
  std::chrono::nanoseconds spin_before_park = std::chrono::microseconds(50);
  /// Initial capacity of each worker's deque (rounded up to a power of two; it grows on demand).
  /// Accepted: 2 to 2^24.
  std::size_t deque_capacity = 256;
  /// Called with the exception of a fire-and-forget task (post). Runs on the worker; must not
  /// throw (an exception from it is swallowed). Unset: the exception is only counted.
  std::function<void(std::exception_ptr)> on_task_error{};

  /// Effective worker count after applying the default.
  unsigned resolved_workers() const noexcept {
    if (workers != 0)
      return workers;
    const unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1 : hw;
  }

  /// Throws std::invalid_argument naming the first invalid field and its accepted range.
  void validate() const {
    if (workers > k_max_workers) {
      throw std::invalid_argument(
          "offload::executor_options.workers must be in [0, " + std::to_string(k_max_workers) +
          "] (0 = one per hardware thread), got " + std::to_string(workers));
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
  }

  static constexpr unsigned k_max_workers = 4096;
};

}  // namespace offload
