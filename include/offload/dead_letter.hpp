#pragma once

/// @file dead_letter.hpp
/// @brief dead_letter: the record of a task that failed for good, and its store's limits.

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "offload/clock.hpp"
#include "offload/lane.hpp"

namespace offload {

namespace detail {
class replayable;
}

/// A task that failed on its last attempt, or with a failure its retry_if refused.
struct dead_letter {
  std::string name;  ///< task_options::name
  std::string key;   ///< task_options::key
  unsigned attempts = 0;
  std::string error;           ///< what() of the last exception ("unknown exception" otherwise)
  std::string exception_type;  ///< the last exception's type name, as the compiler spells it
  offload::lane lane = offload::lane::normal;
  clock::time_point first_failure{};
  clock::time_point last_failure{};
  std::uint64_t id = 0;  ///< unique within the executor; executor::requeue() takes it

  /// True if executor::requeue() can run this task again (its callable could be kept: copyable).
  bool requeueable() const noexcept { return static_cast<bool>(replay); }

  std::shared_ptr<detail::replayable> replay{};  ///< the kept callable; internal
};

/// Bounds of the dead-letter store; the oldest records are evicted first, by whichever bound
/// is reached first.
struct dead_letter_options {
  std::size_t max_count = 1000;                               ///< Accepted: 0 (keep none) to 10^7.
  std::chrono::seconds max_age = std::chrono::hours(24 * 7);  ///< Accepted: 1 s to 365 days.
  /// Most bytes the store holds: per record, the record itself, its texts (name, key, error,
  /// exception type) and its kept callable (the callable object's own size; memory its captures
  /// own on the heap is not seen). Accepted: 4 KiB to 2^40.
  std::size_t max_bytes = std::size_t{64} << 20;
};

}  // namespace offload
