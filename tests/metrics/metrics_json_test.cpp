// offload::to_json (offload/metrics_json.hpp): parsed back with nlohmann-json, every field equals
// the snapshot or health report it came from.

#include <atomic>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>

#include "metrics_test_support.hpp"
#include "unit/test_support.hpp"
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <offload/metrics_json.hpp>
#include <offload/offload.hpp>

namespace {

using namespace std::chrono_literals;
using offload::lane;
using json = nlohmann::json;

void expect_histogram_equal(const json& j, const offload::histogram_snapshot& h) {
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j.size(), 3u);
  EXPECT_EQ(j.at("count").get<std::uint64_t>(), h.count);
  EXPECT_EQ(j.at("sum_seconds").get<double>(), h.sum_seconds);  // round-trips exactly
  const json& buckets = j.at("buckets");
  ASSERT_TRUE(buckets.is_array());
  ASSERT_EQ(buckets.size(), offload::histogram_snapshot::bucket_count);
  for (std::size_t i = 0; i < buckets.size(); ++i)
    EXPECT_EQ(buckets[i].get<std::uint64_t>(), h.buckets[i]) << "bucket " << i;
}

void expect_snapshot_equal(const std::string& text, const offload::metrics_snapshot& m) {
  json j;
  ASSERT_NO_THROW(j = json::parse(text)) << text;
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j.size(), 4u) << j.dump(2);

  const json& lanes = j.at("lanes");
  ASSERT_EQ(lanes.size(), offload::k_lane_count);
  for (lane l : offload_test::k_lanes) {
    SCOPED_TRACE(std::string(offload::to_string(l)));
    const json& jl = lanes.at(std::string(offload::to_string(l)));
    const offload::lane_metrics& s = m.of(l);
    EXPECT_EQ(jl.size(), 9u);
    EXPECT_EQ(jl.at("submitted").get<std::uint64_t>(), s.submitted);
    EXPECT_EQ(jl.at("rejected").get<std::uint64_t>(), s.rejected);
    EXPECT_EQ(jl.at("retries").get<std::uint64_t>(), s.retries);
    EXPECT_EQ(jl.at("queued").get<std::uint64_t>(), s.queued);
    EXPECT_EQ(jl.at("scheduled").get<std::uint64_t>(), s.scheduled);
    EXPECT_EQ(jl.at("running").get<std::uint64_t>(), s.running);
    const json& completed = jl.at("completed");
    ASSERT_EQ(completed.size(), offload::k_outcome_count);
    for (std::size_t o = 0; o < offload::k_outcome_count; ++o) {
      const std::string name(offload::to_string(static_cast<offload::task_outcome>(o)));
      EXPECT_EQ(completed.at(name).get<std::uint64_t>(), s.completed[o]) << name;
    }
    expect_histogram_equal(jl.at("wait"), s.wait);
    expect_histogram_equal(jl.at("run"), s.run);
  }

  const json& workers = j.at("workers");
  ASSERT_TRUE(workers.is_array());
  ASSERT_EQ(workers.size(), m.workers.size());
  for (std::size_t i = 0; i < m.workers.size(); ++i) {
    const json& w = workers[i];
    EXPECT_EQ(w.size(), 5u);
    EXPECT_EQ(w.at("index").get<unsigned>(), m.workers[i].index);
    EXPECT_EQ(w.at("tasks_run").get<std::uint64_t>(), m.workers[i].tasks_run);
    EXPECT_EQ(w.at("steals").get<std::uint64_t>(), m.workers[i].steals);
    EXPECT_EQ(w.at("parks").get<std::uint64_t>(), m.workers[i].parks);
    EXPECT_EQ(w.at("heartbeat_age_seconds").get<double>(), m.workers[i].heartbeat_age_seconds);
  }
  EXPECT_EQ(j.at("dead_letters").get<std::uint64_t>(), m.dead_letters);

  const json& bounds = j.at("bucket_upper_bounds_seconds");
  ASSERT_EQ(bounds.size(), offload::histogram_snapshot::bucket_count - 1);
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    ASSERT_TRUE(bounds[i].is_number_float());
    EXPECT_EQ(bounds[i].get<double>(), offload::histogram_snapshot::upper_bound_seconds(i));
  }
}

TEST(MetricsJson, SnapshotRoundTrips) {
  offload::executor ex{{.workers = 2, .timing_sample_interval = 1}};
  {
    SCOPED_TRACE("idle");  // one snapshot: workers still starting may park between two
    const offload::metrics_snapshot m = ex.metrics();
    expect_snapshot_equal(offload::to_json(m), m);
  }
  offload_test::gate g;
  std::atomic<bool> started{false};
  ex.post(offload::task_options{.lane = lane::high}, [&] {
    started.store(true);
    g.wait();
  });
  offload_test::eventually([&] {
    return started.load();
  });
  for (int i = 0; i < 40; ++i) {
    ex.post(offload::task_options{.lane = offload_test::k_lanes[static_cast<std::size_t>(i % 4)]},
            [i] {
              if (i % 5 == 0)
                throw std::runtime_error("x");
            });
  }
  ex.submit(offload::task_options{.lane = lane::low}, [] {
      return 0;
    }).cancel();
  (void)ex.metrics();
  std::this_thread::sleep_for(2ms);
  {
    SCOPED_TRACE("busy");  // a worker in a task: non-zero heartbeat age; gauges may be non-zero
    const offload::metrics_snapshot m = ex.metrics();
    expect_snapshot_equal(offload::to_json(m), m);
  }
  g.open();
  ex.wait_idle();
  {
    SCOPED_TRACE("after");
    const offload::metrics_snapshot m = ex.metrics();
    ASSERT_GT(m.of(lane::normal).run.count, 0u);
    expect_snapshot_equal(offload::to_json(m), m);
  }
}

TEST(MetricsJson, ExtremeValuesRoundTrip) {
  offload::metrics_snapshot m;
  for (auto& l : m.lanes) {
    l.submitted = std::numeric_limits<std::uint64_t>::max();
    l.completed = {std::numeric_limits<std::uint64_t>::max() - 1, 0, 1, 2};
    l.run.buckets.back() = 3;
    l.run.count = 3;
    l.run.sum_seconds = 1e6 + 0.1;
    l.wait.buckets[0] = 1;
    l.wait.count = 1;
    l.wait.sum_seconds = 1e-9 / 3;
  }
  m.workers.push_back({.index = 7,
                       .tasks_run = std::numeric_limits<std::uint64_t>::max(),
                       .steals = 1,
                       .parks = 2,
                       .heartbeat_age_seconds = 0.1 + 0.2});
  m.dead_letters = 5;
  expect_snapshot_equal(offload::to_json(m), m);
}

void expect_health_equal(const std::string& text, const offload::health_report& h) {
  json j;
  ASSERT_NO_THROW(j = json::parse(text)) << text;
  EXPECT_EQ(j.size(), 6u) << j.dump(2);
  EXPECT_EQ(j.at("healthy").get<bool>(), h.healthy());
  EXPECT_EQ(j.at("live").get<bool>(), h.live());
  EXPECT_EQ(j.at("workers_alive").get<unsigned>(), h.workers_alive);
  EXPECT_EQ(j.at("workers_stuck").get<unsigned>(), h.workers_stuck);
  const json& workers = j.at("workers");
  ASSERT_EQ(workers.size(), h.workers.size());
  for (std::size_t i = 0; i < h.workers.size(); ++i) {
    EXPECT_EQ(workers[i].size(), 4u);
    EXPECT_EQ(workers[i].at("index").get<unsigned>(), h.workers[i].index);
    EXPECT_EQ(workers[i].at("alive").get<bool>(), h.workers[i].alive);
    EXPECT_EQ(workers[i].at("stuck").get<bool>(), h.workers[i].stuck);
    EXPECT_EQ(workers[i].at("running_for_seconds").get<double>(), h.workers[i].running_for_seconds);
  }
  const json& lanes = j.at("lanes");
  ASSERT_EQ(lanes.size(), offload::k_lane_count);
  for (lane l : offload_test::k_lanes) {
    const json& jl = lanes.at(std::string(offload::to_string(l)));
    EXPECT_EQ(jl.size(), 2u);
    EXPECT_EQ(jl.at("queued").get<std::uint64_t>(), h.queued[offload::index_of(l)]);
    EXPECT_EQ(jl.at("oldest_queued_age_seconds").get<double>(),
              h.oldest_queued_age_seconds[offload::index_of(l)]);
  }
}

TEST(MetricsJson, HealthRoundTrips) {
  offload::executor ex{{.workers = 2, .stuck_after = 5ms}};
  {
    SCOPED_TRACE("healthy");
    const offload::health_report h = ex.health();
    ASSERT_TRUE(h.healthy());
    expect_health_equal(offload::to_json(h), h);
  }
  offload_test::gate g;
  std::atomic<int> started{0};
  for (int i = 0; i < 2; ++i) {
    ex.post(offload::task_options{.lane = lane::critical}, [&] {
      started.fetch_add(1);
      g.wait();
    });
  }
  offload_test::eventually([&] {
    return started.load() == 2;
  });
  ex.post(offload::task_options{.lane = lane::low}, [] {});
  offload::health_report h;
  offload_test::eventually([&] {
    h = ex.health();
    if (h.workers_stuck < 2)
      std::this_thread::sleep_for(20ms);
    return h.workers_stuck == 2;
  });
  {
    SCOPED_TRACE("stuck");
    ASSERT_FALSE(h.live());
    ASSERT_EQ(h.queued[offload::index_of(lane::low)], 1u);
    expect_health_equal(offload::to_json(h), h);
  }
  g.open();
  ex.wait_idle();
  ex.shutdown();
  {
    SCOPED_TRACE("shut down");
    h = ex.health();
    expect_health_equal(offload::to_json(h), h);
  }
  // The synthetic empty report.
  expect_health_equal(offload::to_json(offload::health_report{}), offload::health_report{});
}

}  // namespace
