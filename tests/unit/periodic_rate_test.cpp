// Periodic schedules (executor::schedule_every) and rate limits (task_options::rate), on the
// manual clock: runs never overlap, missed runs are skipped, cancel stops the schedule; a rate
// limit holds in every window and a task waiting for a token holds no worker.

#include <atomic>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "unit/test_support.hpp"
#include <gtest/gtest.h>

#include <offload/offload.hpp>

namespace {

using namespace std::chrono_literals;

struct fixture {
  std::shared_ptr<offload::manual_clock> clock = std::make_shared<offload::manual_clock>();
  offload::executor ex{{.workers = 2, .clock = clock}};
};

TEST(Periodic, RunsOncePerPeriod) {
  fixture f;
  std::atomic<int> runs{0};
  auto h = f.ex.schedule_every(10ms, {.name = "tick"}, [&] {
    runs.fetch_add(1);
  });
  EXPECT_EQ(runs.load(), 0);
  for (int i = 1; i <= 5; ++i) {
    f.clock->advance(10ms);
    offload_test::eventually([&] {
      return h.runs() == static_cast<std::uint64_t>(i);
    });
  }
  EXPECT_EQ(runs.load(), 5);
  EXPECT_TRUE(h.cancel());
  EXPECT_FALSE(h.cancel());
  EXPECT_FALSE(h.active());
  f.ex.wait_idle();  // the pending run was taken back: nothing scheduled remains
  EXPECT_EQ(runs.load(), 5);
}

TEST(Periodic, MissedRunsAreSkippedNotBunched) {
  fixture f;
  std::atomic<int> runs{0};
  auto h = f.ex.schedule_every(10ms, {}, [&] {
    runs.fetch_add(1);
  });
  f.clock->advance(100ms);  // ten periods at once
  offload_test::eventually([&] {
    return h.runs() == 1;
  });
  // The next run is at the first multiple still ahead (110 ms), not ten runs in a row.
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(runs.load(), 1);
  f.clock->advance(10ms);
  offload_test::eventually([&] {
    return h.runs() == 2;
  });
  h.cancel();
}

TEST(Periodic, RunsNeverOverlap) {
  fixture f;
  std::atomic<int> running{0};
  std::atomic<int> max_running{0};
  offload_test::gate first_run_may_end;
  std::atomic<int> runs{0};
  auto h = f.ex.schedule_every(10ms, {}, [&] {
    const int now = running.fetch_add(1) + 1;
    int seen = max_running.load();
    while (now > seen && !max_running.compare_exchange_weak(seen, now)) {
    }
    if (runs.fetch_add(1) == 0)
      first_run_may_end.wait();
    running.fetch_sub(1);
  });
  f.clock->advance(10ms);
  offload_test::eventually([&] {
    return running.load() == 1;
  });
  f.clock->advance(50ms);  // five more periods pass while the first run is still going
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(runs.load(), 1) << "a second run started while the first was running";
  first_run_may_end.open();
  offload_test::eventually([&] {
    return h.runs() == 1;
  });
  f.clock->advance(10ms);
  offload_test::eventually([&] {
    return h.runs() == 2;
  });
  EXPECT_EQ(max_running.load(), 1);
  h.cancel();
}

TEST(Periodic, AThrowingRunIsAFailedTaskAndTheScheduleGoesOn) {
  fixture f;
  std::atomic<int> runs{0};
  auto h = f.ex.schedule_every(10ms, {.name = "flaky_tick"}, [&] {
    if (runs.fetch_add(1) == 0)
      throw std::runtime_error("first run fails");
  });
  f.clock->advance(10ms);
  offload_test::eventually([&] {
    return h.runs() == 1;
  });
  f.clock->advance(10ms);
  offload_test::eventually([&] {
    return h.runs() == 2;
  });
  h.cancel();
  f.ex.wait_idle();
  const auto dead = f.ex.dead_letters();
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].name, "flaky_tick");
  EXPECT_EQ(dead[0].error, "first run fails");
}

TEST(Periodic, ShutdownEndsTheSchedule) {
  auto clock = std::make_shared<offload::manual_clock>();
  offload::periodic_handle h;
  {
    offload::executor ex{{.workers = 1, .clock = clock}};
    h = ex.schedule_every(1h, {}, [] {});
    EXPECT_TRUE(h.active());
  }  // destruction drains: the pending run is resolved, not waited for
  EXPECT_FALSE(h.active());
  EXPECT_FALSE(h.cancel());  // safe after the executor is gone
}

TEST(Periodic, InvalidArgumentsNameTheField) {
  fixture f;
  auto message_of = [&](auto call) -> std::string {
    try {
      call();
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(message_of([&] {
              f.ex.schedule_every(0ms, {}, [] {});
            }).find("period"),
            std::string::npos);
  EXPECT_NE(message_of([&] {
              f.ex.schedule_every(10ms, {.retry = offload::retry_policy{.max_attempts = 2}}, [] {});
            }).find("retry"),
            std::string::npos);
  EXPECT_NE(message_of([&] {
              f.ex.schedule_every(10ms, {.delay = -1ms}, [] {});
            }).find("delay"),
            std::string::npos);
}

// A limit of 5 per second with a burst of 2: in every window of length w, at most
// 2 + 5 * w tasks start, whatever the order of arrivals.
TEST(RateLimit, HoldsInEveryWindow) {
  fixture f;
  std::mutex m;
  std::vector<offload::clock::time_point> starts;
  const offload::task_options limited{.name = "emails",
                                      .rate = offload::rate_limit{.per_second = 5, .burst = 2}};
  for (int i = 0; i < 12; ++i) {
    f.ex.post(limited, [&] {
      std::lock_guard lock(m);
      starts.push_back(f.clock->now());
    });
  }
  auto started = [&] {
    std::lock_guard lock(m);
    return starts.size();
  };
  offload_test::eventually([&] {
    return started() == 2;  // the burst
  });
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(started(), 2u) << "more than the burst started at once";
  for (std::size_t expect = 3; expect <= 12; ++expect) {
    f.clock->advance(200ms);  // one token
    offload_test::eventually([&] {
      return started() == expect;
    });
  }
  f.ex.wait_idle();
  std::lock_guard lock(m);
  std::sort(starts.begin(), starts.end());
  for (std::size_t i = 0; i < starts.size(); ++i) {
    for (std::size_t j = i; j < starts.size(); ++j) {
      const double window = std::chrono::duration<double>(starts[j] - starts[i]).count();
      EXPECT_LE(static_cast<double>(j - i + 1), 2 + 5 * window + 1e-9) << i << ".." << j;
    }
  }
}

TEST(RateLimit, AWaitingTaskHoldsNoWorkerAndUnrelatedWorkRuns) {
  auto clock = std::make_shared<offload::manual_clock>();
  offload::executor ex{{.workers = 1, .clock = clock}};
  std::atomic<int> limited_runs{0};
  const offload::task_options limited{.name = "slow_api",
                                      .rate = offload::rate_limit{.per_second = 1, .burst = 1}};
  for (int i = 0; i < 3; ++i) {
    ex.post(limited, [&] {
      limited_runs.fetch_add(1);
    });
  }
  offload_test::eventually([&] {
    return limited_runs.load() == 1;
  });
  // Two limited tasks wait for tokens (the clock does not move), yet the only worker is free.
  std::vector<offload::future<int>> others;
  for (int i = 0; i < 100; ++i) {
    others.push_back(ex.submit([i] {
      return i;
    }));
  }
  int sum = 0;
  for (auto& o : others) sum += o.get();
  EXPECT_EQ(sum, 4950);
  EXPECT_EQ(limited_runs.load(), 1);
  clock->advance(2s);
  offload_test::eventually([&] {
    return limited_runs.load() == 3;
  });
}

TEST(RateLimit, InvalidRatesAreRejectedAtSubmission) {
  fixture f;
  EXPECT_THROW(f.ex.post({.rate = offload::rate_limit{.per_second = 0}}, [] {}),
               std::invalid_argument);
  EXPECT_THROW(f.ex.post({.rate = offload::rate_limit{.per_second = 1, .burst = 0.5}}, [] {}),
               std::invalid_argument);
}

}  // namespace
