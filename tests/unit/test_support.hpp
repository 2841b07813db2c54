#pragma once

// Small helpers shared by the tests.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "offload/lane.hpp"
#include "offload/metrics.hpp"

namespace offload_test {

/// A one-shot gate: tasks block in wait() until open() is called. Used to hold workers busy.
class gate {
 public:
  void open() {
    m_open.store(true, std::memory_order_release);
    m_open.notify_all();
  }
  void wait() const { m_open.wait(false, std::memory_order_acquire); }

 private:
  std::atomic<bool> m_open{false};
};

/// Spins (yielding) until pred() holds; the CTest timeout bounds a failure.
template <class Pred>
void eventually(Pred pred) {
  while (!pred()) std::this_thread::yield();
}

/// Runs `f`, expecting std::invalid_argument whose message contains `needle` (the field).
template <class F>
void expect_invalid(F f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no exception; expected one naming " << needle;
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "message '" << e.what() << "' does not name " << needle;
  } catch (...) {
    ADD_FAILURE() << "another exception; expected std::invalid_argument naming " << needle;
  }
}

/// Per lane: submitted == Σ completed + queued + scheduled + running.
inline ::testing::AssertionResult counters_reconcile(const offload::metrics_snapshot& m) {
  for (std::size_t l = 0; l < offload::k_lane_count; ++l) {
    const auto& lm = m.lanes[l];
    const std::uint64_t accounted = lm.completed_total() + lm.queued + lm.scheduled + lm.running;
    if (lm.submitted != accounted) {
      return ::testing::AssertionFailure()
             << "lane " << offload::to_string(static_cast<offload::lane>(l)) << ": submitted "
             << lm.submitted << " != completed " << lm.completed_total() << " + queued "
             << lm.queued << " + scheduled " << lm.scheduled << " + running " << lm.running;
    }
  }
  return ::testing::AssertionSuccess();
}

}  // namespace offload_test
