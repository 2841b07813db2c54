#pragma once

// Helpers shared by the metrics tests.

#include <array>
#include <cstdint>
#include <string>

#include <gtest/gtest.h>

#include <offload/offload.hpp>

namespace offload_test {

inline constexpr std::array<offload::lane, offload::k_lane_count> k_lanes{
    offload::lane::critical, offload::lane::high, offload::lane::normal, offload::lane::low};

/// submitted == completed_total() + queued + scheduled + running, the identity that holds for
/// every lane of a snapshot taken while the pool is idle.
inline std::uint64_t accounted(const offload::lane_metrics& l) {
  return l.completed_total() + l.queued + l.scheduled + l.running;
}

/// Checks the exact identity on every lane (the pool must be idle), and that nothing is left in
/// the gauges.
inline void expect_reconciled_idle(const offload::metrics_snapshot& m) {
  for (offload::lane lane : k_lanes) {
    const offload::lane_metrics& l = m.of(lane);
    const std::string where = "lane " + std::string(offload::to_string(lane));
    EXPECT_EQ(l.submitted, accounted(l)) << where;
    EXPECT_EQ(l.queued, 0u) << where;
    EXPECT_EQ(l.scheduled, 0u) << where;
    EXPECT_EQ(l.running, 0u) << where;
  }
}

/// Sum of a counter over all lanes.
template <class F>
std::uint64_t sum_lanes(const offload::metrics_snapshot& m, F f) {
  std::uint64_t n = 0;
  for (const auto& l : m.lanes) n += f(l);
  return n;
}

}  // namespace offload_test
