#pragma once

/// @file placement.hpp
/// @brief Worker placement: whether and how workers are pinned to CPUs of the machine's topology.

#include <cstdint>
#include <string_view>

namespace offload {

/// How the executor places its workers on the machine. With hwloc (OFFLOAD_HAS_HWLOC) the
/// topology decides; without it, or when hwloc cannot load the topology, compact and scatter fall
/// back to plain CPU affinity: worker i on the process's allowed CPU i mod N. Either way the
/// process's allowed CPUs are respected, and with more workers than CPUs workers share CPUs.
enum class placement : std::uint8_t {
  /// No pinning: the OS schedules the workers; thieves pick victims at random.
  none,
  /// Workers fill physical cores in topology order, one PU per core first: SMT siblings are used
  /// only once every core has a worker. Neighbouring workers share caches; thieves steal from the
  /// nearest workers first.
  compact,
  /// Workers spread round-robin across packages, then L3 groups within them, then cores: the most
  /// cache and memory bandwidth per worker. SMT siblings are used last, as with compact.
  scatter,
};

/// The placement's name: "none", "compact", "scatter".
constexpr std::string_view to_string(placement p) noexcept {
  switch (p) {
    case placement::none:
      return "none";
    case placement::compact:
      return "compact";
    case placement::scatter:
      return "scatter";
  }
  return "unknown";
}

}  // namespace offload
