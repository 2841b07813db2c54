// Cancellation of queued, delayed, retrying and running tasks, and stop tokens.
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

// Cancellation.

TEST(Cancel, QueuedTaskNeverRuns) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  offload_test::gate g;
  hold_workers(ex, g);
  std::atomic<int> ran{0};
  auto plain = ex.submit([&ran] {
    ran.fetch_add(1);
    return 1;
  });
  auto with_policy =
      ex.submit(task_options{.retry = offload::retry_policy{.max_attempts = 3}}, [&ran] {
        ran.fetch_add(1);
        return 2;
      });
  EXPECT_TRUE(plain.cancel());
  EXPECT_TRUE(with_policy.cancel());
  EXPECT_EQ(plain.state(), task_state::cancelled);
  EXPECT_EQ(with_policy.state(), task_state::cancelled);
  EXPECT_FALSE(plain.cancel());  // once only
  g.open();
  ex.wait_idle();
  EXPECT_EQ(ran.load(), 0);
  EXPECT_EQ(plain.state(), task_state::cancelled);  // terminal: unchanged by the worker's visit
  EXPECT_EQ(with_policy.state(), task_state::cancelled);
  EXPECT_THROW((void)plain.get(), offload::cancelled);
  EXPECT_THROW((void)with_policy.get(), offload::cancelled);
  EXPECT_TRUE(counters_reconcile(ex.metrics()));
}

TEST(Cancel, DelayedTaskNeverRuns) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  std::atomic<bool> ran{false};
  auto f = ex.submit(task_options{.delay = 1s}, [&ran] {
    ran.store(true);
    return 1;
  });
  EXPECT_EQ(f.state(), task_state::scheduled);
  EXPECT_TRUE(f.cancel());
  EXPECT_EQ(f.state(), task_state::cancelled);
  EXPECT_TRUE(f.is_ready());
  c->advance(1s);
  ex.wait_idle();
  EXPECT_FALSE(ran.load());
  EXPECT_EQ(f.state(), task_state::cancelled);
  EXPECT_THROW((void)f.get(), offload::cancelled);
  EXPECT_TRUE(counters_reconcile(ex.metrics()));
}

TEST(Cancel, RetryWaitingTaskNeverRunsAgain) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  std::atomic<int> runs{0};
  auto f = ex.submit(
      task_options{.retry = offload::retry_policy{.max_attempts = 5, .base_delay = 100ms}},
      [&runs] {
        runs.fetch_add(1);
        throw std::runtime_error("fails");
        return 0;
      });
  offload_test::eventually([&] {
    return f.state() == task_state::retrying;
  });
  EXPECT_TRUE(f.cancel());
  EXPECT_EQ(f.state(), task_state::cancelled);
  EXPECT_FALSE(f.cancel());
  c->advance(1h);
  ex.wait_idle();
  EXPECT_EQ(runs.load(), 1);
  EXPECT_EQ(f.state(), task_state::cancelled);
  EXPECT_THROW((void)f.get(), offload::cancelled);
  EXPECT_TRUE(ex.dead_letters().empty());  // cancelled, not failed
  EXPECT_TRUE(counters_reconcile(ex.metrics()));
}

TEST(Cancel, RunningTaskSeesTheRequestAndCancelReturnsFalse) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  std::atomic<bool> started{false};
  auto f = ex.submit([&started] {
    EXPECT_FALSE(offload::this_task::stop_requested());
    started.store(true);
    while (!offload::this_task::stop_requested()) std::this_thread::yield();
    return 7;
  });
  offload_test::eventually([&] {
    return started.load();
  });
  EXPECT_EQ(f.state(), task_state::running);
  EXPECT_FALSE(f.cancel());  // running: it cannot be stopped from outside
  f.wait();                  // it saw the request and returned
  EXPECT_EQ(f.state(), task_state::succeeded);
  EXPECT_FALSE(f.cancel());
  EXPECT_EQ(f.state(), task_state::succeeded);
  EXPECT_EQ(f.get(), 7);
  EXPECT_FALSE(offload::this_task::stop_requested());  // outside a task
}

TEST(Cancel, RunningTaskWithRetriesIsNotRetriedAfterACancel) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  std::atomic<bool> started{false};
  std::atomic<int> runs{0};
  auto f = ex.submit(
      task_options{
          .retry = offload::retry_policy{.max_attempts = 5, .base_delay = 0ms, .max_delay = 0ms}},
      [&]() -> int {
        runs.fetch_add(1);
        started.store(true);
        while (!offload::this_task::stop_requested()) std::this_thread::yield();
        throw std::runtime_error("stopped");
      });
  offload_test::eventually([&] {
    return started.load();
  });
  EXPECT_FALSE(f.cancel());
  f.wait();
  ex.wait_idle();
  EXPECT_EQ(runs.load(), 1);
  EXPECT_EQ(f.state(), task_state::failed);
  EXPECT_THROW((void)f.get(), std::runtime_error);
}

TEST(Cancel, FinishedTaskStaysAsItEnded) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  auto ok = ex.submit([] {
    return 1;
  });
  auto bad = ex.submit(task_options{.key = "bad"}, []() -> int {
    throw std::runtime_error("x");
  });
  ok.wait();
  bad.wait();
  EXPECT_FALSE(ok.cancel());
  EXPECT_FALSE(bad.cancel());
  EXPECT_EQ(ok.state(), task_state::succeeded);
  EXPECT_EQ(bad.state(), task_state::failed);
  EXPECT_EQ(ok.get(), 1);
  EXPECT_THROW((void)bad.get(), std::runtime_error);
}

// A task that takes a std::stop_token sees cancel() while it runs, through the token and its
// std::stop_callbacks.
TEST(StopToken, CancelWhileRunningStopsTheToken) {
  offload::executor ex{offload::executor_options{.workers = 2}};
  std::atomic<bool> started{false};
  std::atomic<bool> callback_ran{false};
  auto f = ex.submit([&](std::stop_token token) {
    std::stop_callback on_stop(token, [&] {
      callback_ran.store(true);
    });
    started.store(true);
    while (!token.stop_requested()) std::this_thread::yield();
    return 7;
  });
  while (!started.load()) std::this_thread::yield();
  EXPECT_FALSE(f.cancel());  // running: not cancelled, but asked to stop
  EXPECT_EQ(f.get(), 7);
  EXPECT_TRUE(callback_ran.load());
}

TEST(StopToken, ArgumentsFollowTheToken) {
  offload::executor ex{offload::executor_options{.workers = 1}};
  auto f = ex.submit(
      [](std::stop_token token, int a, int b) {
        return token.stop_possible() && !token.stop_requested() ? a + b : -1;
      },
      2,
      3);
  EXPECT_EQ(f.get(), 5);
}

TEST(StopToken, PostGetsATokenThatNeverStops) {
  offload::executor ex{offload::executor_options{.workers = 1}};
  std::atomic<int> seen{-1};
  ex.post([&](std::stop_token token) {
    seen.store(token.stop_possible() ? 1 : 0);
  });
  ex.wait_idle();
  EXPECT_EQ(seen.load(), 0);
}

TEST(StopToken, RetriedTaskKeepsItsToken) {
  offload::executor ex{offload::executor_options{.workers = 1}};
  auto f = ex.submit(
      offload::task_options{.retry = offload::retry_policy{.max_attempts = 2, .base_delay = 1ms}},
      [](std::stop_token token) {
        if (offload::this_task::attempt() == 1)
          throw std::runtime_error("transient");
        return token.stop_possible();
      });
  EXPECT_TRUE(f.get());
}

}  // namespace
