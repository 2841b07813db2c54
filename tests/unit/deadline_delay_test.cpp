// Delayed starts and deadlines.
// Timing runs on a manual_clock (see policy_test_support.hpp).

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

#include "unit/policy_test_support.hpp"
#include "unit/test_support.hpp"
#include <gtest/gtest.h>

#include <offload/offload.hpp>

namespace {

using namespace std::chrono_literals;
using namespace policy_test;

// Delays.

TEST(Delay, StartsOnlyOnceTheClockHasAdvancedByTheDelay) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  std::atomic<bool> ran{false};
  auto f = ex.submit(task_options{.delay = 30ms}, [&ran] {
    ran.store(true);
    return 30;
  });
  EXPECT_EQ(f.state(), task_state::scheduled);
  advance_and_settle(ex, *c, 29ms);  // the timer has seen t0 + 29 ms
  EXPECT_FALSE(ran.load());
  EXPECT_EQ(f.state(), task_state::scheduled);
  EXPECT_FALSE(f.is_ready());
  EXPECT_EQ(ex.metrics().of(lane::normal).scheduled, 1u);
  c->advance(1ms);
  f.wait();
  EXPECT_EQ(f.state(), task_state::succeeded);
  EXPECT_EQ(f.get(), 30);
  EXPECT_TRUE(ran.load());
  EXPECT_EQ(ex.metrics().of(lane::normal).scheduled, 0u);
}

TEST(Delay, PostedDelayedTaskRunsAfterTheDelay) {
  auto c = make_clock();
  offload::executor ex{with_clock(2, c)};
  std::atomic<bool> ran{false};
  ex.post(task_options{.lane = lane::low, .delay = 1s}, [&ran] {
    ran.store(true);
  });
  EXPECT_EQ(ex.metrics().of(lane::low).scheduled, 1u);
  c->advance(1s);
  offload_test::eventually([&] {
    return ran.load();
  });
}

TEST(Delay, WaitIdleWaitsForDelayedTasks) {
  auto c = make_clock();
  offload::executor ex{with_clock(2, c)};
  std::atomic<bool> ran{false};
  std::atomic<bool> waiting{false};
  std::atomic<bool> advanced{false};
  ex.post(task_options{.delay = 30ms}, [&ran] {
    ran.store(true);
  });
  std::thread advancer([&] {
    offload_test::eventually([&] {
      return waiting.load();
    });
    advanced.store(true);
    c->advance(30ms);
  });
  waiting.store(true);
  ex.wait_idle();  // returns only once the delayed task ran, so only after the advance
  EXPECT_TRUE(advanced.load());
  EXPECT_TRUE(ran.load());
  advancer.join();
}

TEST(Delay, EqualDueTimesStartInSubmissionOrder) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  recorder<int> order;
  for (int i = 0; i < 20; ++i) {
    ex.post(task_options{.delay = 10ms}, [&order, i] {
      order.add(i);
    });
  }
  c->advance(10ms);
  ex.wait_idle();
  std::vector<int> expected(20);
  for (int i = 0; i < 20; ++i) expected[static_cast<std::size_t>(i)] = i;
  EXPECT_EQ(order.values(), expected);
}

// ---------------------------------------------------------------------------------------------
// Deadlines.

TEST(Deadline, ExpiresAtTheDeadlineWhileTheWorkerIsBusy) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  offload_test::gate g;
  hold_workers(ex, g);
  std::atomic<bool> ran{false};
  auto f = ex.submit(task_options{.deadline = c->now() + 10ms}, [&ran] {
    ran.store(true);
    return 1;
  });
  EXPECT_EQ(f.state(), task_state::queued);
  c->advance(10ms);
  // Resolved by the timer at the deadline, not when the (still blocked) worker reaches it.
  offload_test::eventually([&] {
    return f.is_ready();
  });
  EXPECT_EQ(f.state(), task_state::expired);
  g.open();
  ex.wait_idle();
  EXPECT_FALSE(ran.load());
  EXPECT_EQ(f.state(), task_state::expired);  // unchanged when the worker reached the task
  EXPECT_THROW((void)f.get(), offload::expired);
  EXPECT_EQ(ex.metrics().of(lane::normal).completed_of(offload::task_outcome::expired), 1u);
  EXPECT_TRUE(counters_reconcile(ex.metrics()));
}

TEST(Deadline, AlreadyPastAtSubmissionNeverRuns) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  std::atomic<bool> ran{false};
  auto f = ex.submit(task_options{.deadline = c->now()}, [&ran] {
    ran.store(true);
    return 1;
  });
  f.wait();
  ex.wait_idle();
  EXPECT_FALSE(ran.load());
  EXPECT_EQ(f.state(), task_state::expired);
  EXPECT_THROW((void)f.get(), offload::expired);
}

TEST(Deadline, TaskStartedInTimeRuns) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  auto f = ex.submit(task_options{.deadline = c->now() + 1h}, [] {
    return 9;
  });
  f.wait();
  c->advance(2h);  // the expiry timer fires later and changes nothing
  advance_and_settle(ex, *c, 1ms);
  EXPECT_EQ(f.state(), task_state::succeeded);
  EXPECT_EQ(f.get(), 9);
}

TEST(Deadline, DelayedPastItsDeadlineNeverRuns) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  std::atomic<bool> ran{false};
  auto f = ex.submit(task_options{.delay = 20ms, .deadline = c->now() + 10ms}, [&ran] {
    ran.store(true);
    return 1;
  });
  c->advance(10ms);
  offload_test::eventually([&] {
    return f.is_ready();
  });
  EXPECT_EQ(f.state(), task_state::expired);
  c->advance(10ms);
  ex.wait_idle();
  EXPECT_FALSE(ran.load());
  EXPECT_THROW((void)f.get(), offload::expired);
}

TEST(Deadline, RetryNotStartedByTheDeadlineNeverRuns) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  std::atomic<int> runs{0};
  auto f = ex.submit(task_options{.retry = offload::retry_policy{.max_attempts = 3,
                                                                 .backoff = backoff::fixed,
                                                                 .base_delay = 20ms,
                                                                 .max_delay = 20ms},
                                  .deadline = c->now() + 10ms},
                     [&runs]() -> int {
                       runs.fetch_add(1);
                       throw std::runtime_error("fails");
                     });
  offload_test::eventually([&] {
    return f.state() == task_state::retrying;
  });
  c->advance(10ms);
  offload_test::eventually([&] {
    return f.is_ready();
  });
  EXPECT_EQ(f.state(), task_state::expired);
  c->advance(10ms);  // the retry comes due: skipped
  ex.wait_idle();
  EXPECT_EQ(runs.load(), 1);
  EXPECT_THROW((void)f.get(), offload::expired);
  EXPECT_TRUE(counters_reconcile(ex.metrics()));
}

}  // namespace
