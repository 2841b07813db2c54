// executor::metrics(): per-lane counters and gauges that reconcile, outcomes, backpressure
// counts, per-worker figures, and the queue-wait and run-time histograms.

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "metrics_test_support.hpp"
#include "unit/test_support.hpp"
#include <gtest/gtest.h>

#include <offload/offload.hpp>

namespace {

using namespace std::chrono_literals;
using offload::lane;
using offload::task_outcome;
using offload_test::accounted;
using offload_test::k_lanes;

using outcome_counts =
    std::array<std::array<std::uint64_t, offload::k_outcome_count>, offload::k_lane_count>;

std::uint64_t& count_of(outcome_counts& c, lane l, task_outcome o) {
  return c[offload::index_of(l)][static_cast<std::size_t>(o)];
}

/// Blocks `n` workers of `ex` in tasks of lane `l` until `g` opens; returns once all of them run.
void block_workers(offload::executor& ex, offload_test::gate& g, unsigned n, lane l) {
  auto started = std::make_shared<std::atomic<unsigned>>(0);
  for (unsigned i = 0; i < n; ++i) {
    ex.post(offload::task_options{.lane = l, .name = "blocker"}, [&g, started] {
      started->fetch_add(1);
      g.wait();
    });
  }
  offload_test::eventually([&] {
    return started->load() == n;
  });
}

// Several producers submit to every lane; some tasks throw, some futures are cancelled before
// they run, some tasks are posted. A monitor takes snapshots throughout: the identity holds
// within the tasks in flight around each snapshot, gauges never wrap below zero, counters never
// go down. At idle the identity is exact and every outcome is counted in its lane.
TEST(Metrics, CountersReconcileUnderConcurrentLoad) {
  constexpr unsigned k_workers = 2;
  constexpr int k_producers = 3;
  constexpr int k_per_producer = 3000;
  offload::executor ex{{.workers = k_workers}};

  // Deterministic cancellations first: with every worker blocked, cancel() always takes effect.
  outcome_counts expected{};
  std::vector<offload::future<int>> cancelled;
  offload_test::gate g;  // outlives the blocked tasks: they finish before the executor
  {
    block_workers(ex, g, k_workers, lane::critical);
    count_of(expected, lane::critical, task_outcome::succeeded) += k_workers;
    for (int i = 0; i < 40; ++i) {
      const lane l = k_lanes[static_cast<std::size_t>(i) % k_lanes.size()];
      cancelled.push_back(ex.submit(offload::task_options{.lane = l}, [] {
        return 1;
      }));
      ASSERT_TRUE(cancelled.back().cancel());
      ++count_of(expected, l, task_outcome::cancelled);
    }
    g.open();
  }

  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> snapshots{0};
  std::thread monitor([&] {
    offload::metrics_snapshot previous = ex.metrics();
    while (!done.load()) {
      const offload::metrics_snapshot before = ex.metrics();
      const offload::metrics_snapshot m = ex.metrics();
      const offload::metrics_snapshot after = ex.metrics();
      for (lane l : k_lanes) {
        const auto& b = before.of(l);
        const auto& s = m.of(l);
        const auto& a = after.of(l);
        const auto& p = previous.of(l);
        // Tasks in flight at some point while `m` was taken: submitted by the end of `after`,
        // not completed at the start of `before`.
        ASSERT_GE(a.submitted, b.completed_total());
        const std::uint64_t in_flight = a.submitted - b.completed_total();
        const std::uint64_t lhs = s.submitted;
        const std::uint64_t rhs = accounted(s);
        ASSERT_LE(lhs > rhs ? lhs - rhs : rhs - lhs, in_flight)
            << "lane " << offload::to_string(l) << ": submitted " << s.submitted << ", completed "
            << s.completed_total() << ", queued " << s.queued << ", running " << s.running;
        // Derived gauges: a negative value would show as a huge unsigned one.
        ASSERT_LE(s.queued + s.scheduled + s.running, in_flight) << offload::to_string(l);
        // (running may exceed the worker count: tasks taken and finished while the snapshot is
        // read count as running in it, within the in-flight bound above.)
        ASSERT_EQ(s.scheduled, 0u);
        ASSERT_LE(s.completed_total(), s.submitted) << offload::to_string(l);
        // Counters only grow.
        ASSERT_GE(s.submitted, p.submitted);
        for (std::size_t o = 0; o < offload::k_outcome_count; ++o)
          ASSERT_GE(s.completed[o], p.completed[o]);
        ASSERT_GE(s.wait.count, p.wait.count);
        ASSERT_GE(s.run.count, p.run.count);
      }
      previous = m;
      snapshots.fetch_add(1);
    }
  });

  std::vector<outcome_counts> per_producer(k_producers);
  std::vector<std::thread> producers;
  for (int p = 0; p < k_producers; ++p) {
    producers.emplace_back([&ex, &per_producer, p] {
      outcome_counts& mine = per_producer[static_cast<std::size_t>(p)];
      struct pending {
        offload::future<int> f;
        bool throws;
        bool was_cancelled;
      };
      std::vector<pending> futures;
      for (int i = 0; i < k_per_producer; ++i) {
        const lane l = k_lanes[static_cast<std::size_t>(i + p) % k_lanes.size()];
        const offload::task_options opts{.lane = l, .name = i % 2 == 0 ? "even" : ""};
        if (i % 5 == 0) {
          const bool throws = i % 10 == 0;
          ex.post(opts, [throws] {
            if (throws)
              throw std::runtime_error("posted task failed");
          });
          ++count_of(mine, l, throws ? task_outcome::failed : task_outcome::succeeded);
          continue;
        }
        const bool throws = i % 7 == 0;
        auto f = ex.submit(opts, [throws, i] {
          if (throws)
            throw std::runtime_error("submitted task failed");
          return i;
        });
        const bool was_cancelled = i % 11 == 0 && f.cancel();
        ++count_of(mine,
                   l,
                   was_cancelled ? task_outcome::cancelled
                   : throws      ? task_outcome::failed
                                 : task_outcome::succeeded);
        futures.push_back({std::move(f), throws, was_cancelled});
      }
      for (auto& [f, throws, was_cancelled] : futures) {
        if (was_cancelled) {
          EXPECT_THROW(f.get(), offload::cancelled);
        } else if (throws) {
          EXPECT_THROW(f.get(), std::runtime_error);
        } else {
          EXPECT_NO_THROW(f.get());
        }
      }
    });
  }
  for (auto& t : producers) t.join();
  // Let the monitor see a few snapshots under load even on a slow machine.
  offload_test::eventually([&] {
    return snapshots.load() >= 3;
  });
  ex.wait_idle();
  done.store(true);
  monitor.join();
  for (auto& f : cancelled) EXPECT_THROW(f.get(), offload::cancelled);

  for (const auto& mine : per_producer) {
    for (std::size_t l = 0; l < offload::k_lane_count; ++l) {
      for (std::size_t o = 0; o < offload::k_outcome_count; ++o) expected[l][o] += mine[l][o];
    }
  }
  const offload::metrics_snapshot m = ex.metrics();
  offload_test::expect_reconciled_idle(m);
  std::uint64_t total = 0;
  for (lane l : k_lanes) {
    const auto& s = m.of(l);
    for (std::size_t o = 0; o < offload::k_outcome_count; ++o) {
      EXPECT_EQ(s.completed[o], expected[offload::index_of(l)][o])
          << "lane " << offload::to_string(l) << ", outcome "
          << offload::to_string(static_cast<task_outcome>(o));
    }
    EXPECT_EQ(s.rejected, 0u);
    EXPECT_EQ(s.retries, 0u);
    EXPECT_EQ(s.completed_of(task_outcome::expired), 0u);
    total += s.submitted;
  }
  EXPECT_EQ(total, k_workers + 40u + std::uint64_t{k_producers} * k_per_producer);
  EXPECT_EQ(ex.stats().submitted, total);
  EXPECT_EQ(ex.stats().completed, total);
  // Failed tasks are dead-lettered (default policy: one attempt); the gauge is the store's size.
  EXPECT_EQ(m.dead_letters, ex.dead_letters().size());
  EXPECT_GT(m.dead_letters, 0u);

  // Per-worker figures: every task was taken by a worker (cancelled ones are taken and skipped).
  ASSERT_EQ(m.workers.size(), k_workers);
  std::uint64_t run_by_workers = 0;
  for (unsigned i = 0; i < k_workers; ++i) {
    EXPECT_EQ(m.workers[i].index, i);
    EXPECT_EQ(m.workers[i].heartbeat_age_seconds, 0.0) << "idle workers have no heartbeat age";
    run_by_workers += m.workers[i].tasks_run;
  }
  EXPECT_EQ(run_by_workers, total);
  EXPECT_GT(snapshots.load(), 0u);
}

// Gauges follow a task through its states: queued while the workers are busy, running while it
// executes, completed after; the identity is exact whenever nothing moves.
TEST(Metrics, GaugesFollowTasksThroughTheirStates) {
  offload::executor ex{{.workers = 1}};
  offload_test::expect_reconciled_idle(ex.metrics());

  offload_test::gate g;
  block_workers(ex, g, 1, lane::normal);
  std::vector<offload::future<int>> fs;
  for (int i = 0; i < 3; ++i) {
    fs.push_back(ex.submit(offload::task_options{.lane = lane::low}, [i] {
      return i;
    }));
  }
  for (int i = 0; i < 2; ++i) {
    fs.push_back(ex.submit(offload::task_options{.lane = lane::high}, [i] {
      return i;
    }));
  }
  offload::metrics_snapshot m = ex.metrics();
  EXPECT_EQ(m.of(lane::normal).running, 1u);
  EXPECT_EQ(m.of(lane::normal).queued, 0u);
  EXPECT_EQ(m.of(lane::normal).submitted, 1u);
  EXPECT_EQ(m.of(lane::low).queued, 3u);
  EXPECT_EQ(m.of(lane::low).running, 0u);
  EXPECT_EQ(m.of(lane::high).queued, 2u);
  EXPECT_EQ(m.of(lane::critical).submitted, 0u);
  for (lane l : k_lanes) {
    EXPECT_EQ(m.of(l).submitted, accounted(m.of(l))) << offload::to_string(l);
    EXPECT_EQ(m.of(l).completed_total(), 0u) << offload::to_string(l);
  }

  g.open();
  for (auto& f : fs) f.get();
  ex.wait_idle();
  m = ex.metrics();
  offload_test::expect_reconciled_idle(m);
  EXPECT_EQ(m.of(lane::normal).completed_of(task_outcome::succeeded), 1u);
  EXPECT_EQ(m.of(lane::low).completed_of(task_outcome::succeeded), 3u);
  EXPECT_EQ(m.of(lane::high).completed_of(task_outcome::succeeded), 2u);
}

// Backpressure shows in the counters: a refused submission counts as rejected (not submitted),
// a caller_runs task as submitted and completed, a submission after shutdown as rejected.
TEST(Metrics, RejectionsAndCallerRunsAreCounted) {
  offload::executor_options options{.workers = 1};
  options.lanes[offload::index_of(lane::low)] = {.capacity = 1,
                                                 .overflow = offload::overflow_policy::reject};
  options.lanes[offload::index_of(lane::high)] = {
      .capacity = 1, .overflow = offload::overflow_policy::caller_runs};
  offload::executor ex{options};
  offload_test::gate g;
  block_workers(ex, g, 1, lane::normal);

  auto queued_low = ex.submit(offload::task_options{.lane = lane::low}, [] {
    return 1;
  });
  EXPECT_THROW(ex.submit(offload::task_options{.lane = lane::low},
                         [] {
                           return 2;
                         }),
               offload::rejected);
  EXPECT_THROW(ex.post(offload::task_options{.lane = lane::low}, [] {}), offload::rejected);
  auto queued_high = ex.submit(offload::task_options{.lane = lane::high}, [] {
    return 3;
  });
  auto ran_here = ex.submit(offload::task_options{.lane = lane::high}, [] {
    return std::this_thread::get_id();
  });
  ASSERT_TRUE(ran_here.is_ready());
  EXPECT_EQ(ran_here.get(), std::this_thread::get_id());
  auto failed_here = ex.submit(offload::task_options{.lane = lane::high}, []() -> int {
    throw std::runtime_error("caller_runs failure");
  });
  EXPECT_THROW(failed_here.get(), std::runtime_error);

  offload::metrics_snapshot m = ex.metrics();
  EXPECT_EQ(m.of(lane::low).submitted, 1u);
  EXPECT_EQ(m.of(lane::low).rejected, 2u);
  EXPECT_EQ(m.of(lane::low).queued, 1u);
  EXPECT_EQ(m.of(lane::high).submitted, 3u);
  EXPECT_EQ(m.of(lane::high).rejected, 0u);
  EXPECT_EQ(m.of(lane::high).queued, 1u);
  EXPECT_EQ(m.of(lane::high).completed_of(task_outcome::succeeded), 1u);
  EXPECT_EQ(m.of(lane::high).completed_of(task_outcome::failed), 1u);
  for (lane l : k_lanes) EXPECT_EQ(m.of(l).submitted, accounted(m.of(l))) << offload::to_string(l);

  g.open();
  EXPECT_EQ(queued_low.get(), 1);
  EXPECT_EQ(queued_high.get(), 3);
  ex.shutdown();
  EXPECT_THROW(ex.post([] {}), offload::rejected);
  m = ex.metrics();
  offload_test::expect_reconciled_idle(m);
  EXPECT_EQ(m.of(lane::normal).rejected, 1u);
  EXPECT_EQ(m.of(lane::normal).submitted, 1u);
  EXPECT_EQ(m.of(lane::low).completed_of(task_outcome::succeeded), 1u);
  EXPECT_EQ(m.of(lane::high).completed_of(task_outcome::succeeded), 2u);
}

// Tasks left queued by shutdown(cancel) are counted as cancelled, and the books still balance.
TEST(Metrics, ShutdownCancelCountsQueuedTasksAsCancelled) {
  offload::executor ex{{.workers = 1}};
  offload_test::gate g;
  block_workers(ex, g, 1, lane::high);
  std::vector<offload::future<int>> fs;
  for (int i = 0; i < 10; ++i) {
    fs.push_back(ex.submit(offload::task_options{.lane = lane::low}, [i] {
      return i;
    }));
  }
  std::thread opener([&] {
    // Opens the gate once shutdown has begun (submissions are refused from then on).
    offload_test::eventually([&] {
      try {
        ex.post([] {});
        return false;
      } catch (const offload::rejected&) {
        return true;
      }
    });
    g.open();
  });
  ex.shutdown(offload::shutdown_mode::cancel);
  opener.join();
  for (auto& f : fs) EXPECT_THROW(f.get(), offload::cancelled);
  const offload::metrics_snapshot m = ex.metrics();
  offload_test::expect_reconciled_idle(m);
  EXPECT_EQ(m.of(lane::low).completed_of(task_outcome::cancelled), 10u);
  EXPECT_EQ(m.of(lane::high).completed_of(task_outcome::succeeded), 1u);
  // The posts that probed for shutdown before it began ran (or were cancelled); later ones were
  // rejected: every normal-lane submission is accounted for either way.
  EXPECT_EQ(m.of(lane::normal).submitted, m.of(lane::normal).completed_total());
  EXPECT_GE(m.of(lane::normal).rejected, 1u);
}

// Delays, retries and deadlines move tasks through `scheduled`, count `retries` and the
// `expired` outcome, and the identity still holds whenever nothing moves (timers on a
// manual_clock, so that nothing moves unless the test says so).
TEST(Metrics, DelaysRetriesAndDeadlinesReconcile) {
  auto clk = std::make_shared<offload::manual_clock>();
  offload::executor ex{{.workers = 2, .timing_sample_interval = 1, .clock = clk}};
  auto stable = [&] {
    const offload::metrics_snapshot m = ex.metrics();
    for (lane l : k_lanes) {
      EXPECT_EQ(m.of(l).submitted, accounted(m.of(l))) << offload::to_string(l);
    }
    return m;
  };

  // Delayed: scheduled until the clock reaches the delay.
  std::vector<offload::future<int>> delayed;
  for (int i = 0; i < 4; ++i) {
    delayed.push_back(ex.submit(offload::task_options{.lane = lane::low, .delay = 1h}, [i] {
      return i;
    }));
  }
  offload::metrics_snapshot m = stable();
  EXPECT_EQ(m.of(lane::low).submitted, 4u);
  EXPECT_EQ(m.of(lane::low).scheduled, 4u);
  EXPECT_EQ(m.of(lane::low).queued, 0u);

  // Retried twice, then succeeds: two retries, one completion.
  std::atomic<int> attempts{0};
  auto retried = ex.submit(
      offload::task_options{.lane = lane::high,
                            .retry = offload::retry_policy{.max_attempts = 3,
                                                           .backoff = offload::backoff::fixed,
                                                           .base_delay = 1s,
                                                           .jitter = offload::jitter::none}},
      [&attempts] {
        if (attempts.fetch_add(1) < 2)
          throw std::runtime_error("transient");
        return 42;
      });
  // Fails on every attempt: one retry, then failed for good and dead-lettered.
  auto doomed = ex.submit(
      offload::task_options{.lane = lane::critical,
                            .retry = offload::retry_policy{.max_attempts = 2,
                                                           .backoff = offload::backoff::fixed,
                                                           .base_delay = 1s,
                                                           .jitter = offload::jitter::none},
                            .name = "doomed"},
      []() -> int {
        throw std::runtime_error("permanent");
      });
  offload_test::eventually([&] {
    m = ex.metrics();
    return m.of(lane::high).retries == 1 && m.of(lane::critical).retries == 1 &&
           m.of(lane::high).scheduled == 1 && m.of(lane::critical).scheduled == 1;
  });
  m = stable();
  EXPECT_EQ(m.of(lane::high).submitted, 1u);
  EXPECT_EQ(m.of(lane::high).completed_total(), 0u);
  clk->advance(1s);
  EXPECT_THROW(doomed.get(), std::runtime_error);
  offload_test::eventually([&] {
    m = ex.metrics();
    return m.of(lane::high).retries == 2 && m.of(lane::high).scheduled == 1;
  });
  clk->advance(1s);
  EXPECT_EQ(retried.get(), 42);

  // Expired: its deadline passes while every worker is busy.
  offload_test::gate g;
  block_workers(ex, g, 2, lane::normal);
  auto late =
      ex.submit(offload::task_options{.lane = lane::normal, .deadline = clk->now() + 10s}, [] {
        return 0;
      });
  clk->advance(11s);
  EXPECT_THROW(late.get(), offload::expired);
  g.open();

  clk->advance(1h);
  for (auto& f : delayed) f.get();
  ex.wait_idle();
  m = ex.metrics();
  offload_test::expect_reconciled_idle(m);
  EXPECT_EQ(m.of(lane::low).completed_of(task_outcome::succeeded), 4u);
  EXPECT_EQ(m.of(lane::high).completed_of(task_outcome::succeeded), 1u);
  EXPECT_EQ(m.of(lane::high).completed_of(task_outcome::failed), 0u);
  EXPECT_EQ(m.of(lane::high).retries, 2u);
  EXPECT_EQ(m.of(lane::critical).completed_of(task_outcome::failed), 1u);
  EXPECT_EQ(m.of(lane::critical).retries, 1u);
  EXPECT_EQ(m.of(lane::normal).completed_of(task_outcome::expired), 1u);
  EXPECT_EQ(m.of(lane::normal).completed_of(task_outcome::succeeded), 2u);  // the blockers
  EXPECT_EQ(m.dead_letters, 1u);
  const auto dead = ex.dead_letters();
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].name, "doomed");
  EXPECT_EQ(dead[0].attempts, 2u);
  EXPECT_EQ(dead[0].lane, lane::critical);
}

/// Lower bound in seconds of histogram bucket i.
double lower_bound_seconds(std::size_t i) {
  return i == 0 ? 0.0 : offload::histogram_snapshot::upper_bound_seconds(i - 1);
}

/// Index of the highest non-empty bucket (0 if empty).
std::size_t highest_bucket(const offload::histogram_snapshot& h) {
  std::size_t top = 0;
  for (std::size_t i = 0; i < h.buckets.size(); ++i) {
    if (h.buckets[i] != 0)
      top = i;
  }
  return top;
}

void expect_consistent(const offload::histogram_snapshot& h) {
  std::uint64_t n = 0;
  for (auto b : h.buckets) n += b;
  EXPECT_EQ(n, h.count);
  EXPECT_GE(h.sum_seconds, 0.0);
  if (h.count == 0) {
    EXPECT_EQ(h.sum_seconds, 0.0);
  }
  // No duration can exceed its bucket's upper bound, so the sum is bounded by the buckets.
  double bound = 0;
  for (std::size_t i = 0; i + 1 < h.buckets.size(); ++i)
    bound +=
        static_cast<double>(h.buckets[i]) * offload::histogram_snapshot::upper_bound_seconds(i);
  if (h.buckets.back() == 0) {
    EXPECT_LE(h.sum_seconds, bound * 1.0001 + 1e-9);
  }
}

TEST(Metrics, HistogramBucketBoundsAreLogLinear) {
  using h = offload::histogram_snapshot;
  EXPECT_DOUBLE_EQ(h::upper_bound_seconds(0), 256e-9);
  EXPECT_DOUBLE_EQ(h::upper_bound_seconds(1), 384e-9);
  EXPECT_DOUBLE_EQ(h::upper_bound_seconds(2), 512e-9);
  for (std::size_t i = 1; i + 1 < h::bucket_count; ++i)
    EXPECT_LT(h::upper_bound_seconds(i - 1), h::upper_bound_seconds(i));
  EXPECT_EQ(h::upper_bound_seconds(h::bucket_count - 1), std::numeric_limits<double>::infinity());
  EXPECT_GT(h::upper_bound_seconds(h::bucket_count - 2), 60.0);
}

// With timing_sample_interval = 1 every task is timed: wait and run counts equal the completed
// counts, from several producer threads; a task that sleeps 20 ms lands in a bucket of 16 ms or
// more and the sums are plausible.
TEST(Metrics, HistogramsTimeEveryTaskWhenSamplingIsOne) {
  offload::executor ex{{.workers = 2, .timing_sample_interval = 1}};
  constexpr int k_producers = 2;
  constexpr int k_per_producer = 400;
  std::vector<std::thread> producers;
  for (int p = 0; p < k_producers; ++p) {
    producers.emplace_back([&ex, p] {
      for (int i = 0; i < k_per_producer; ++i) {
        // Lane high is kept for the slow task below.
        const lane l = std::array{
            lane::critical, lane::normal, lane::low}[static_cast<std::size_t>(i + p) % 3];
        if (i % 4 == 0) {
          ex.post(offload::task_options{.lane = l}, [] {});
        } else {
          ex.submit(offload::task_options{.lane = l}, [i] {
            if (i % 9 == 0)
              throw std::runtime_error("counted too");
            return i;
          });
        }
      }
    });
  }
  for (auto& t : producers) t.join();
  ex.wait_idle();
  const auto slept_from = std::chrono::steady_clock::now();
  ex.submit(offload::task_options{.lane = lane::high}, [] {
      std::this_thread::sleep_for(20ms);
    }).get();
  // The worker records the run time after it published the result (get() may return first, and
  // a worker preempted in between records later): wait_idle() returns only once the task is
  // counted complete, which is after its run time was recorded.
  ex.wait_idle();
  const double slept_at_most =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - slept_from).count();

  const offload::metrics_snapshot m = ex.metrics();
  offload_test::expect_reconciled_idle(m);
  std::uint64_t timed = 0;
  for (lane l : k_lanes) {
    const auto& s = m.of(l);
    SCOPED_TRACE(std::string(offload::to_string(l)));
    EXPECT_EQ(s.wait.count, s.completed_total());
    EXPECT_EQ(s.run.count, s.completed_total());
    expect_consistent(s.wait);
    expect_consistent(s.run);
    timed += s.run.count;
  }
  EXPECT_EQ(timed, std::uint64_t{k_producers} * k_per_producer + 1);

  const offload::histogram_snapshot& slow = m.of(lane::high).run;
  ASSERT_EQ(slow.count, 1u);
  const std::size_t b = highest_bucket(slow);
  EXPECT_GE(lower_bound_seconds(b), 0.016) << "bucket " << b;
  EXPECT_GE(slow.quantile_upper_bound_seconds(0.5), 0.016);
  EXPECT_GE(slow.sum_seconds, 0.019);
  EXPECT_LE(slow.sum_seconds, slept_at_most + 0.001)
      << "tick_clock reads "
      << (offload::detail::tick_clock::uses_tsc() ? "the TSC" : "steady_clock");
  EXPECT_LE(m.of(lane::high).wait.sum_seconds, slept_at_most + 0.001);
}

// The wait histogram measures the time a task spends queued: here 30 ms behind a blocked worker.
TEST(Metrics, WaitHistogramMeasuresQueueTime) {
  offload::executor ex{{.workers = 1, .timing_sample_interval = 1}};
  offload_test::gate g;
  block_workers(ex, g, 1, lane::normal);
  const auto queued_at = std::chrono::steady_clock::now();
  auto f = ex.submit(offload::task_options{.lane = lane::low}, [] {
    return 7;
  });
  std::this_thread::sleep_for(30ms);
  g.open();
  EXPECT_EQ(f.get(), 7);
  const double waited_at_most =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - queued_at).count();
  ex.wait_idle();
  const offload::metrics_snapshot m = ex.metrics();
  const offload::histogram_snapshot& w = m.of(lane::low).wait;
  ASSERT_EQ(w.count, 1u);
  EXPECT_GE(lower_bound_seconds(highest_bucket(w)), 0.016);
  EXPECT_GE(w.sum_seconds, 0.029);
  EXPECT_LE(w.sum_seconds, waited_at_most + 0.001);
}

// One task in timing_sample_interval per submitting thread is timed; counters stay exact.
TEST(Metrics, HistogramsSampleOneTaskInInterval) {
  offload::executor ex{{.workers = 1, .timing_sample_interval = 4}};
  std::vector<std::thread> producers;
  for (int p = 0; p < 2; ++p) {
    producers.emplace_back([&ex] {
      for (int i = 0; i < 100; ++i) ex.post(offload::task_options{.lane = lane::low}, [] {});
    });
  }
  for (auto& t : producers) t.join();
  ex.wait_idle();
  const offload::metrics_snapshot m = ex.metrics();
  offload_test::expect_reconciled_idle(m);
  EXPECT_EQ(m.of(lane::low).completed_of(task_outcome::succeeded), 200u);
  EXPECT_EQ(m.of(lane::low).wait.count, 2u * (100 / 4));
  EXPECT_EQ(m.of(lane::low).run.count, 2u * (100 / 4));
}

}  // namespace
