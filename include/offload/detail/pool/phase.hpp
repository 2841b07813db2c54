#pragma once

/// @file phase.hpp
/// @brief pool_phase: where a pool is in its life.

#include <cstdint>

namespace offload::detail {

/// running → draining or cancelling (shutdown began) → stopped (the workers are told to exit).
/// Written only by pool::shutdown(); read by submissions from outside the pool (the producer
/// gate), the timer's retries, and the workers (to stop).
enum class pool_phase : std::uint32_t { running, draining, cancelling, stopped };

}  // namespace offload::detail
