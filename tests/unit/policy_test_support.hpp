#pragma once

// What the policy tests share (retry_test, dead_letter_test, deadline_delay_test, cancel_test,
// key_test, policy_edges_test): a manual clock, a failure type, a recorder, and helpers that hold
// the workers or let the timer settle. Timing runs on a manual_clock: tests advance it and wait
// for the effects with offload_test::eventually(), never on wall time.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <ostream>
#include <random>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "unit/test_support.hpp"
#include <gtest/gtest.h>

#include <offload/offload.hpp>

namespace offload {
// Readable task states in failure messages.
inline void PrintTo(task_state s, std::ostream* os) {
  *os << to_string(s);
}
}  // namespace offload

namespace policy_test {

using namespace std::chrono_literals;
using offload::backoff;
using offload::jitter;
using offload::lane;
using offload::retry_policy;
using offload::task_options;
using offload::task_state;
using clock_ptr = std::shared_ptr<offload::manual_clock>;

inline clock_ptr make_clock() {
  return std::make_shared<offload::manual_clock>();
}

inline offload::executor_options with_clock(unsigned workers, const clock_ptr& c) {
  return {.workers = workers, .clock = c};
}

/// A failure type of the tests' own, to check that futures and dead letters keep it.
class card_declined : public std::runtime_error {
 public:
  explicit card_declined(const std::string& what, int id = 0)
      : std::runtime_error(what), serial(id) {}
  int serial;
};

/// Records values from several threads.
template <class T>
class recorder {
 public:
  void add(T v) {
    std::lock_guard lock(m_mutex);
    m_values.push_back(std::move(v));
  }
  std::vector<T> values() const {
    std::lock_guard lock(m_mutex);
    return m_values;
  }
  std::size_t size() const {
    std::lock_guard lock(m_mutex);
    return m_values.size();
  }

 private:
  mutable std::mutex m_mutex;
  std::vector<T> m_values;
};

/// Occupies every worker of `ex` with a task waiting on `g`; returns once all of them run.
inline void hold_workers(offload::executor& ex, offload_test::gate& g) {
  std::atomic<unsigned> started{0};
  for (unsigned i = 0; i < ex.worker_count(); ++i) {
    ex.post([&g, &started] {
      started.fetch_add(1);
      g.wait();
    });
  }
  offload_test::eventually([&] {
    return started.load() == ex.worker_count();
  });
}

/// Advances the clock by `d` and returns once the executor's timer has handled the new time: a
/// probe task delayed by exactly `d` (due no later than anything it is meant to hold back) has
/// run. With one worker and one lane, whatever the timer released before the probe ran before it.
/// The workers must be free to run the probe.
inline void advance_and_settle(offload::executor& ex,
                               offload::manual_clock& c,
                               offload::clock::duration d) {
  std::atomic<bool> probe{false};
  ex.post(task_options{.delay = d}, [&probe] {
    probe.store(true);
  });
  c.advance(d);
  offload_test::eventually([&] {
    return probe.load();
  });
}

using offload_test::counters_reconcile;

}  // namespace policy_test
