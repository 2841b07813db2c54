// Priority lanes (G5): strict preference, FIFO within a lane, the starvation bound, lane
// inheritance, and per-lane capacities with their overflow policies.

#include <atomic>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "unit/test_support.hpp"
#include <gtest/gtest.h>

#include <offload/offload.hpp>

namespace {

using namespace std::chrono_literals;
using offload::lane;

/// Records the order in which tasks ran.
class run_log {
 public:
  void add(int id) {
    std::lock_guard lock(m_mutex);
    m_ids.push_back(id);
  }
  std::vector<int> ids() const {
    std::lock_guard lock(m_mutex);
    return m_ids;
  }

 private:
  mutable std::mutex m_mutex;
  std::vector<int> m_ids;
};

/// Occupies every worker of `ex` with a task waiting on `g`; returns once all of them run.
void hold_workers(offload::executor& ex, offload_test::gate& g) {
  std::atomic<unsigned> started{0};
  for (unsigned i = 0; i < ex.worker_count(); ++i) {
    ex.post(offload::task_options{.lane = lane::critical}, [&g, &started] {
      started.fetch_add(1);
      g.wait();
    });
  }
  offload_test::eventually([&] {
    return started.load() == ex.worker_count();
  });
}

TEST(Lanes, HigherLanesGoFirst) {
  offload::executor ex{{.workers = 1, .starvation_guard = 1000}};
  offload_test::gate g;
  hold_workers(ex, g);
  run_log log;
  // Submitted lowest first, so that queue order alone would give the opposite of lane order.
  for (lane l : {lane::low, lane::normal, lane::high, lane::critical}) {
    for (int i = 0; i < 10; ++i) {
      const int id = static_cast<int>(offload::index_of(l)) * 100 + i;
      ex.post(offload::task_options{.lane = l}, [&log, id] {
        log.add(id);
      });
    }
  }
  g.open();
  ex.wait_idle();
  const std::vector<int> ids = log.ids();
  ASSERT_EQ(ids.size(), 40u);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    // Lane index i/10 (critical first), FIFO within the lane.
    EXPECT_EQ(ids[i], static_cast<int>(i / 10) * 100 + static_cast<int>(i % 10)) << "at " << i;
  }
}

TEST(Lanes, FifoWithinALaneFromOneProducer) {
  offload::executor ex{{.workers = 1}};
  offload_test::gate g;
  hold_workers(ex, g);
  run_log log;
  for (int i = 0; i < 500; ++i) {
    ex.post(offload::task_options{.lane = lane::low}, [&log, i] {
      log.add(i);
    });
  }
  g.open();
  ex.wait_idle();
  const std::vector<int> ids = log.ids();
  ASSERT_EQ(ids.size(), 500u);
  for (int i = 0; i < 500; ++i) EXPECT_EQ(ids[static_cast<std::size_t>(i)], i);
}

// G5: while a lane below critical has work, a worker takes one of its tasks at least once per
// 3 × starvation_guard tasks, however much critical work is queued, and whether or not the other
// lower lanes have work.
class LowerLaneStarvation : public ::testing::TestWithParam<lane> {};

TEST_P(LowerLaneStarvation, BoundHolds) {
  constexpr unsigned k_guard = 8;
  offload::executor ex{{.workers = 1, .starvation_guard = k_guard}};
  offload_test::gate g;
  hold_workers(ex, g);
  run_log log;
  constexpr int k_critical = 3000;
  constexpr int k_lower = 50;
  for (int i = 0; i < k_critical; ++i) {
    ex.post(offload::task_options{.lane = lane::critical}, [&log] {
      log.add(0);
    });
  }
  for (int i = 1; i <= k_lower; ++i) {
    ex.post(offload::task_options{.lane = GetParam()}, [&log, i] {
      log.add(i);
    });
  }
  g.open();
  ex.wait_idle();
  const std::vector<int> ids = log.ids();
  ASSERT_EQ(ids.size(), static_cast<std::size_t>(k_critical + k_lower));
  int seen = 0;
  for (std::size_t pos = 0; pos < ids.size(); ++pos) {
    if (ids[pos] == 0)
      continue;
    ++seen;
    EXPECT_EQ(ids[pos], seen) << "FIFO within the lane";
    // The k-th task runs within the first k windows of 3 × guard picks (+1: the holder).
    EXPECT_LE(pos + 1, static_cast<std::size_t>(seen) * 3 * k_guard + 1)
        << "task " << seen << " of lane " << offload::to_string(GetParam()) << " waited too long";
  }
  EXPECT_EQ(seen, k_lower);
}

INSTANTIATE_TEST_SUITE_P(Lanes,
                         LowerLaneStarvation,
                         ::testing::Values(lane::high, lane::normal, lane::low),
                         [](const auto& param_info) {
                           return std::string(offload::to_string(param_info.param));
                         });

TEST(Lanes, TasksSpawnedInsideAWorkerKeepTheirLane) {
  offload::executor ex{{.workers = 2}};
  auto f = ex.submit(offload::task_options{.lane = lane::high}, [&ex] {
    return ex
        .submit([] {
          return 7;
        })
        .get();
  });
  EXPECT_EQ(f.get(), 7);
  ex.wait_idle();
  const offload::metrics_snapshot m = ex.metrics();
  EXPECT_EQ(m.of(lane::high).submitted, 2u);
  EXPECT_EQ(m.of(lane::normal).submitted, 0u);
}

TEST(Lanes, TaskOptionsOverrideTheInheritedLane) {
  offload::executor ex{{.workers = 1}};
  ex.submit(offload::task_options{.lane = lane::critical}, [&ex] {
      ex.post(offload::task_options{.lane = lane::low}, [] {});
    }).get();
  ex.wait_idle();
  const offload::metrics_snapshot m = ex.metrics();
  EXPECT_EQ(m.of(lane::critical).submitted, 1u);
  EXPECT_EQ(m.of(lane::low).submitted, 1u);
}

offload::executor_options bounded_low(std::size_t capacity,
                                      offload::overflow_policy policy,
                                      std::chrono::nanoseconds timeout = 100ms) {
  offload::executor_options o{.workers = 1};
  o.lanes[offload::index_of(lane::low)] = {
      .capacity = capacity, .overflow = policy, .block_timeout = timeout};
  return o;
}

TEST(Backpressure, RejectPolicyRefusesPastCapacityAndNamesTheLane) {
  offload::executor ex{bounded_low(2, offload::overflow_policy::reject)};
  offload_test::gate g;
  hold_workers(ex, g);
  const offload::task_options low{.lane = lane::low};
  auto a = ex.submit(low, [] {
    return 1;
  });
  auto b = ex.submit(low, [] {
    return 2;
  });
  try {
    ex.submit(low, [] {
      return 3;
    });
    ADD_FAILURE() << "expected offload::rejected";
  } catch (const offload::rejected& e) {
    EXPECT_NE(std::string(e.what()).find("'low'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("capacity 2"), std::string::npos) << e.what();
  }
  // Other lanes are not affected.
  auto c = ex.submit([] {
    return 4;
  });
  g.open();
  EXPECT_EQ(a.get() + b.get() + c.get(), 7);
  ex.wait_idle();
  EXPECT_EQ(ex.metrics().of(lane::low).rejected, 1u);
  EXPECT_EQ(ex.metrics().of(lane::low).submitted, 2u);
  // The slots came back when the tasks started.
  EXPECT_EQ(ex.submit(low,
                      [] {
                        return 5;
                      })
                .get(),
            5);
}

TEST(Backpressure, BlockPolicyWaitsForRoom) {
  offload::executor ex{bounded_low(1, offload::overflow_policy::block, 10s)};
  offload_test::gate g;
  hold_workers(ex, g);
  const offload::task_options low{.lane = lane::low};
  ex.post(low, [] {});
  std::atomic<bool> second_accepted{false};
  std::thread producer([&] {
    ex.post(low, [] {});  // blocks: the lane is full until the worker takes the first task
    second_accepted.store(true);
  });
  std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(second_accepted.load()) << "submitted past capacity without waiting";
  g.open();
  producer.join();
  EXPECT_TRUE(second_accepted.load());
  ex.wait_idle();
  EXPECT_EQ(ex.metrics().of(lane::low).submitted, 2u);
  EXPECT_EQ(ex.metrics().of(lane::low).rejected, 0u);
}

TEST(Backpressure, BlockPolicyRejectsAfterItsTimeout) {
  offload::executor ex{bounded_low(1, offload::overflow_policy::block, 20ms)};
  offload_test::gate g;
  hold_workers(ex, g);
  const offload::task_options low{.lane = lane::low};
  ex.post(low, [] {});
  try {
    ex.post(low, [] {});
    ADD_FAILURE() << "expected offload::rejected after the block timeout";
  } catch (const offload::rejected& e) {
    EXPECT_NE(std::string(e.what()).find("block_timeout"), std::string::npos) << e.what();
  }
  g.open();
  ex.wait_idle();
  EXPECT_EQ(ex.metrics().of(lane::low).rejected, 1u);
}

TEST(Backpressure, ShutdownReleasesABlockedSubmitter) {
  offload::executor ex{bounded_low(1, offload::overflow_policy::block, 1h)};
  offload_test::gate g;
  hold_workers(ex, g);
  const offload::task_options low{.lane = lane::low};
  ex.post(low, [] {});
  std::atomic<bool> rejected{false};
  std::thread producer([&] {
    try {
      ex.post(low, [] {});
    } catch (const offload::rejected&) {
      rejected.store(true);
    }
  });
  std::this_thread::sleep_for(10ms);  // let it block (if it has not yet, it is rejected at once)
  std::thread stopper([&] {
    ex.shutdown(offload::shutdown_mode::cancel);
  });
  producer.join();  // returns: shutdown woke it
  EXPECT_TRUE(rejected.load());
  g.open();
  stopper.join();
}

TEST(Backpressure, CallerRunsPolicyRunsOnTheSubmittingThread) {
  offload::executor ex{bounded_low(1, offload::overflow_policy::caller_runs)};
  offload_test::gate g;
  hold_workers(ex, g);
  const offload::task_options low{.lane = lane::low};
  ex.post(low, [] {});
  const auto me = std::this_thread::get_id();
  auto f = ex.submit(low, [] {
    return std::this_thread::get_id();
  });
  EXPECT_TRUE(f.is_ready()) << "caller_runs: the task ran before submit() returned";
  EXPECT_EQ(f.get(), me);
  // A failing task run by the caller still resolves its future with the exception.
  auto bad = ex.submit(low, []() -> int {
    throw std::runtime_error("boom");
  });
  EXPECT_THROW(bad.get(), std::runtime_error);
  g.open();
  ex.wait_idle();
  const offload::metrics_snapshot m = ex.metrics();
  EXPECT_EQ(m.of(lane::low).submitted, 3u);
  EXPECT_EQ(m.of(lane::low).completed_total(), 3u);
  EXPECT_EQ(m.of(lane::low).completed_of(offload::task_outcome::failed), 1u);
}

TEST(Backpressure, TasksSpawnedByWorkersAreNeverRefused) {
  offload::executor ex{bounded_low(1, offload::overflow_policy::reject)};
  std::atomic<int> ran{0};
  ex.submit(offload::task_options{.lane = lane::low}, [&] {
      for (int i = 0; i < 100; ++i) {
        ex.post([&ran] {
          ran.fetch_add(1);
        });
      }
    }).get();
  ex.wait_idle();
  EXPECT_EQ(ran.load(), 100);
}

TEST(LaneOptions, InvalidValuesNameTheField) {
  auto message_of = [](offload::executor_options o) -> std::string {
    try {
      offload::executor ex{std::move(o)};
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  };
  offload::executor_options zero{.workers = 1};
  zero.lanes[offload::index_of(lane::low)].capacity = 0;
  EXPECT_NE(message_of(zero).find("lanes[low].capacity"), std::string::npos);
  offload::executor_options negative{.workers = 1};
  negative.lanes[0].block_timeout = -1ms;
  EXPECT_NE(message_of(negative).find("lanes[critical].block_timeout"), std::string::npos);
  EXPECT_NE(message_of({.workers = 1, .starvation_guard = 1}).find("starvation_guard"),
            std::string::npos);
  EXPECT_NE(message_of({.workers = 1, .timing_sample_interval = 0}).find("timing_sample_interval"),
            std::string::npos);
  EXPECT_NE(message_of({.workers = 1, .stuck_after = 0ms}).find("stuck_after"), std::string::npos);
}

}  // namespace
