#pragma once

/// @file phase.hpp
/// @brief pool_phase: where a pool is in its life.

#include <cstdint>

namespace offload::detail {

/// running → draining or cancelling (shutdown began) → stopped (the workers are told to exit).
/// Written only by pool::begin_shutdown() and pool::finish_shutdown(); read by every submission.
enum class pool_phase : std::uint32_t { running, draining, cancelling, stopped };

}  // namespace offload::detail
