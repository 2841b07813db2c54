// executor::health(): workers alive and stuck, observed from outside the workers across calls,
// and the age of the oldest queued task per lane.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "metrics_test_support.hpp"
#include "unit/test_support.hpp"
#include <gtest/gtest.h>

#include <offload/offload.hpp>

namespace {

using namespace std::chrono_literals;
using offload::lane;

/// Blocks one worker of `ex` in a task of lane `l` until `g` opens; returns once it runs.
void block_one_worker(offload::executor& ex, offload_test::gate& g, lane l = lane::normal) {
  auto started = std::make_shared<std::atomic<bool>>(false);
  ex.post(offload::task_options{.lane = l, .name = "blocked"}, [&g, started] {
    started->store(true);
    g.wait();
  });
  offload_test::eventually([&] {
    return started->load();
  });
}

/// Index of the only stuck worker, or -1 if none or several are stuck.
int only_stuck(const offload::health_report& h) {
  int found = -1;
  for (const auto& w : h.workers) {
    if (w.stuck) {
      if (found != -1)
        return -1;
      found = static_cast<int>(w.index);
    }
  }
  return found;
}

std::size_t idx(lane l) {
  return offload::index_of(l);
}

TEST(Health, IdlePoolIsHealthy) {
  offload::executor ex{{.workers = 3, .stuck_after = 1ms}};
  for (int i = 0; i < 3; ++i) {
    const offload::health_report h = ex.health();
    ASSERT_EQ(h.workers.size(), 3u);
    EXPECT_EQ(h.workers_alive, 3u);
    EXPECT_EQ(h.workers_stuck, 0u);
    EXPECT_TRUE(h.healthy());
    EXPECT_TRUE(h.live());
    for (unsigned w = 0; w < 3; ++w) {
      EXPECT_EQ(h.workers[w].index, w);
      EXPECT_TRUE(h.workers[w].alive);
      EXPECT_FALSE(h.workers[w].stuck);
      EXPECT_EQ(h.workers[w].running_for_seconds, 0.0);
    }
    for (std::size_t l = 0; l < offload::k_lane_count; ++l) {
      EXPECT_EQ(h.queued[l], 0u);
      EXPECT_EQ(h.oldest_queued_age_seconds[l], 0.0);
    }
    std::this_thread::sleep_for(5ms);  // longer than stuck_after: idle workers are never stuck
  }
}

// A worker blocked on a gate inside a task shows as stuck once two checks more than stuck_after
// apart saw it in that task; the other worker keeps running tasks and the pool stays live.
TEST(Health, BlockedWorkerShowsStuckWhileThePoolStaysLive) {
  offload::executor ex{{.workers = 2, .stuck_after = 5ms}};
  offload_test::gate g;
  block_one_worker(ex, g);

  int stuck = -1;
  offload::health_report h;
  offload_test::eventually([&] {
    h = ex.health();
    EXPECT_TRUE(h.live());
    EXPECT_EQ(h.workers_alive, 2u);
    stuck = only_stuck(h);
    if (stuck < 0)
      std::this_thread::sleep_for(20ms);  // well over stuck_after between two checks
    return stuck >= 0;
  });
  const auto blocked = static_cast<std::size_t>(stuck);
  const std::size_t other = 1 - blocked;
  EXPECT_EQ(h.workers_stuck, 1u);
  EXPECT_FALSE(h.healthy());
  EXPECT_TRUE(h.live());
  EXPECT_GT(h.workers[blocked].running_for_seconds, 0.005);
  EXPECT_EQ(h.workers[other].running_for_seconds, 0.0);
  EXPECT_FALSE(h.workers[other].stuck);

  // The other worker keeps running tasks meanwhile.
  const std::uint64_t other_before = ex.metrics().workers[other].tasks_run;
  std::vector<offload::future<int>> fs;
  for (int i = 0; i < 200; ++i) {
    fs.push_back(ex.submit([i] {
      return i;
    }));
  }
  for (int i = 0; i < 200; ++i) EXPECT_EQ(fs[static_cast<std::size_t>(i)].get(), i);
  const offload::metrics_snapshot m = ex.metrics();
  EXPECT_EQ(m.workers[other].tasks_run - other_before, 200u);
  EXPECT_GT(m.workers[blocked].heartbeat_age_seconds, 0.005);
  EXPECT_EQ(m.of(lane::normal).running, 1u);

  const double first_age = h.workers[blocked].running_for_seconds;
  std::this_thread::sleep_for(20ms);
  h = ex.health();
  EXPECT_EQ(h.workers_alive, 2u);
  EXPECT_EQ(h.workers_stuck, 1u);
  EXPECT_EQ(only_stuck(h), stuck);
  EXPECT_TRUE(h.live());
  EXPECT_GE(h.workers[blocked].running_for_seconds, first_age + 0.019) << "keeps growing";

  // Unblocked, it finishes its task and is no longer stuck.
  g.open();
  offload_test::eventually([&] {
    h = ex.health();
    return h.workers_stuck == 0;
  });
  ex.wait_idle();
  h = ex.health();
  EXPECT_TRUE(h.healthy());
  EXPECT_EQ(h.workers[blocked].running_for_seconds, 0.0);

  ex.shutdown();
  h = ex.health();
  EXPECT_EQ(h.workers.size(), 2u);
  EXPECT_EQ(h.workers_alive, 0u);
  EXPECT_EQ(h.workers_stuck, 0u);
  EXPECT_FALSE(h.live());
  EXPECT_FALSE(h.healthy());
}

// With every worker blocked, the pool is not live.
TEST(Health, AllWorkersBlockedIsNotLive) {
  offload::executor ex{{.workers = 2, .stuck_after = 5ms}};
  offload_test::gate g;
  block_one_worker(ex, g);
  block_one_worker(ex, g);
  offload::health_report h;
  offload_test::eventually([&] {
    h = ex.health();
    if (h.workers_stuck < 2)
      std::this_thread::sleep_for(20ms);
    return h.workers_stuck == 2;
  });
  EXPECT_EQ(h.workers_alive, 2u);
  EXPECT_FALSE(h.live());
  EXPECT_FALSE(h.healthy());
  g.open();
  ex.wait_idle();
  offload_test::eventually([&] {
    return ex.health().healthy();
  });
}

// Workers that keep finishing tasks are never stuck, however busy (generous stuck_after: one
// trivial task would have to take a second).
TEST(Health, BusyWorkersThatMakeProgressAreNotStuck) {
  offload::executor ex{{.workers = 2, .stuck_after = 1s}};
  std::atomic<bool> stop{false};
  std::thread producer([&] {
    while (!stop.load()) {
      for (int i = 0; i < 64; ++i) ex.post([] {});
      std::this_thread::yield();
    }
  });
  for (int i = 0; i < 20; ++i) {
    const offload::health_report h = ex.health();
    EXPECT_EQ(h.workers_stuck, 0u);
    EXPECT_EQ(h.workers_alive, 2u);
    EXPECT_TRUE(h.live());
    std::this_thread::sleep_for(10ms);
  }
  stop.store(true);
  producer.join();
  ex.wait_idle();
}

// The oldest queued task's age grows for a lane whose tasks wait behind blocked workers, and is
// 0 for lanes with nothing queued.
TEST(Health, OldestQueuedAgeGrowsWhileALaneWaits) {
  offload::executor ex{{.workers = 1}};
  offload_test::gate g;
  block_one_worker(ex, g, lane::critical);
  const auto first_submit = std::chrono::steady_clock::now();
  std::vector<offload::future<int>> fs;
  for (int i = 0; i < 5; ++i) {
    fs.push_back(ex.submit(offload::task_options{.lane = lane::low}, [i] {
      return i;
    }));
  }
  const offload::health_report h1 = ex.health();
  EXPECT_EQ(h1.queued[idx(lane::low)], 5u);
  EXPECT_GT(h1.oldest_queued_age_seconds[idx(lane::low)], 0.0);
  for (lane l : {lane::critical, lane::high, lane::normal}) {
    EXPECT_EQ(h1.queued[idx(l)], 0u) << offload::to_string(l);
    EXPECT_EQ(h1.oldest_queued_age_seconds[idx(l)], 0.0) << offload::to_string(l);
  }

  std::this_thread::sleep_for(30ms);
  const offload::health_report h2 = ex.health();
  const double since_first =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - first_submit).count();
  EXPECT_EQ(h2.queued[idx(lane::low)], 5u);
  EXPECT_GE(h2.oldest_queued_age_seconds[idx(lane::low)],
            h1.oldest_queued_age_seconds[idx(lane::low)] + 0.029);
  // At least as old as the oldest task really is.
  EXPECT_GE(h2.oldest_queued_age_seconds[idx(lane::low)], since_first - 0.001);
  EXPECT_EQ(h2.oldest_queued_age_seconds[idx(lane::high)], 0.0);
  // With the default stuck_after (10 s) the blocked worker is not reported stuck yet.
  EXPECT_EQ(h2.workers_stuck, 0u);

  g.open();
  for (auto& f : fs) f.get();
  ex.wait_idle();
  const offload::health_report h3 = ex.health();
  for (std::size_t l = 0; l < offload::k_lane_count; ++l) {
    EXPECT_EQ(h3.queued[l], 0u);
    EXPECT_EQ(h3.oldest_queued_age_seconds[l], 0.0);
  }
}

// The oldest queued age reflects the tasks that are queued now, not the lane's history: after an
// idle period, a task queued a moment ago is not reported as old, and a lane that never had a task
// is not dated from the executor's start. An alert on this gauge must not fire for a pool that
// merely idled.
TEST(Health, OldestQueuedAgeIgnoresTimeTheLaneWasEmpty) {
  offload::executor ex{{.workers = 1, .timing_sample_interval = 1}};
  ex.submit(offload::task_options{.lane = lane::low}, [] {
      return 0;
    }).get();
  std::this_thread::sleep_for(300ms);                       // the pool idles
  const auto queued_at = std::chrono::steady_clock::now();  // the blocker's enqueue is the stamp
  offload_test::gate g;
  block_one_worker(ex, g, lane::critical);
  auto low = ex.submit(offload::task_options{.lane = lane::low}, [] {
    return 1;
  });
  auto high = ex.submit(offload::task_options{.lane = lane::high}, [] {
    return 2;  // lane high never had a task before: the executor's age is not the task's
  });
  const offload::health_report h = ex.health();
  const double queued_for =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - queued_at).count();
  EXPECT_EQ(h.queued[idx(lane::low)], 1u);
  EXPECT_LE(h.oldest_queued_age_seconds[idx(lane::low)], queued_for + 0.05);
  EXPECT_EQ(h.queued[idx(lane::high)], 1u);
  EXPECT_LE(h.oldest_queued_age_seconds[idx(lane::high)], queued_for + 0.05);
  g.open();
  EXPECT_EQ(low.get(), 1);
  EXPECT_EQ(high.get(), 2);
}

}  // namespace
