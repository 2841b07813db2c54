// Timers at their edges: durations up to duration::max() saturate instead of wrapping into the
// past (everywhere a due time is computed), cancel() cuts sleeps short, and a cancelled or
// finished task gives its timer entries back at once (its node, its captures, its state).

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <thread>
#include <vector>

#include "unit/test_support.hpp"
#include <gtest/gtest.h>

#include <offload/offload.hpp>

namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;
constexpr auto k_max = offload::clock::duration::max();

/// Objects alive now, of every instance ever made (moved-from ones included).
std::atomic<int> g_alive{0};
struct tracked {
  tracked() { ++g_alive; }
  tracked(const tracked&) { ++g_alive; }
  tracked(tracked&&) noexcept { ++g_alive; }
  ~tracked() { --g_alive; }
};

TEST(Durations, AMaximalDelayNeverRunsUntilCancelled) {
  offload::executor ex{{.workers = 1}};
  std::atomic<int> ran{0};
  std::vector<offload::future<void>> fs;
  for (const auto d : {k_max, k_max - std::chrono::duration_cast<offload::clock::duration>(1h)}) {
    fs.push_back(ex.submit(offload::task_options{.delay = d}, [&] {
      ++ran;
    }));
    fs.push_back(ex.submit(offload::task_options{.delay = d, .name = "policy path"}, [&] {
      ++ran;
    }));
  }
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(ran.load(), 0) << "a huge delay wrapped into the past";
  for (auto& f : fs) {
    EXPECT_EQ(f.state(), offload::task_state::scheduled);
    EXPECT_TRUE(f.cancel());
    EXPECT_THROW(f.get(), offload::cancelled);
  }
  ex.post(offload::task_options{.delay = k_max}, [&] {
    ++ran;
  });
  ex.shutdown(offload::shutdown_mode::cancel);
  EXPECT_EQ(ran.load(), 0);
}

TEST(Durations, AMaximalSleepLastsUntilCancelled) {
  for (const bool fibers : {true, false}) {
    offload::executor ex{{.workers = 1, .fibers = fibers}};
    std::atomic<bool> woke{false};
    auto f = ex.submit([&] {
      offload::this_task::sleep_for(k_max);
      woke = true;
    });
    std::this_thread::sleep_for(50ms);
    EXPECT_FALSE(woke.load()) << "sleep_for(max) returned at once (fibers " << fibers << ")";
    EXPECT_FALSE(f.cancel());  // running: the sleep is cut short
    ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
    EXPECT_TRUE(woke.load());
  }
}

TEST(Durations, AMaximalCoroutineSleepLastsUntilCancelled) {
  offload::executor ex{{.workers = 1}};
  std::atomic<bool> woke{false};
  auto f = ex.submit([&]() -> offload::task<void> {
    co_await offload::sleep_for(k_max);
    woke = true;
  });
  std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(woke.load()) << "co_await sleep_for(max) returned at once";
  f.cancel();
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  EXPECT_TRUE(woke.load());
}

TEST(Durations, HugeSleepsOfOtherUnitsSaturateToo) {
  offload::executor ex{{.workers = 1}};
  std::atomic<bool> woke{false};
  auto f = ex.submit([&] {
    offload::this_task::sleep_for(std::chrono::hours::max());  // overflows nanoseconds
    woke = true;
  });
  std::this_thread::sleep_for(30ms);
  EXPECT_FALSE(woke.load());
  f.cancel();
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
}

TEST(Durations, AMaximalPeriodNeverFires) {
  offload::executor ex{{.workers = 1}};
  std::atomic<int> runs{0};
  auto h = ex.schedule_every(k_max, {}, [&] {
    ++runs;
  });
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(runs.load(), 0) << "schedule_every(max) fired";
  EXPECT_TRUE(h.cancel());
  // Near the top of the range: the next due time saturates instead of wrapping.
  auto h2 = ex.schedule_every(k_max / 2, offload::task_options{.delay = 1ms}, [&] {
    ++runs;
  });
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(runs.load(), 1);
  h2.cancel();
}

TEST(Durations, AMaximalRetryAfterWaitsUntilCancelled) {
  offload::executor ex{{.workers = 1}};
  std::atomic<int> attempts{0};
  auto f = ex.submit(offload::task_options{.retry = offload::retry_policy{.max_attempts = 2}},
                     [&]() -> int {
                       ++attempts;
                       offload::this_task::retry_after(k_max);
                     });
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(attempts.load(), 1) << "retry_after(max) retried at once";
  EXPECT_EQ(f.state(), offload::task_state::retrying);
  EXPECT_TRUE(f.cancel());
  EXPECT_THROW(f.get(), offload::cancelled);
}

TEST(Durations, WaitForAnHourMaxWaits) {
  offload::executor ex{{.workers = 1}};
  auto f = ex.submit([] {
    std::this_thread::sleep_for(20ms);
    return 1;
  });
  EXPECT_EQ(f.wait_for(std::chrono::hours::max()), std::future_status::ready);
  EXPECT_EQ(f.wait_for(std::chrono::nanoseconds::max()), std::future_status::ready);
  offload::promise<int> never;
  auto pending = never.get_future();
  EXPECT_EQ(pending.wait_for(-1h), std::future_status::timeout);
  EXPECT_EQ(pending.wait_for(std::chrono::hours::min()), std::future_status::timeout);
}

TEST(Durations, AManualClockSaturates) {
  offload::manual_clock c;
  const auto before = c.now();
  c.advance(k_max);
  EXPECT_GE(c.now(), before);
  c.advance(k_max);
  EXPECT_EQ(c.now(), offload::clock::time_point::max());
}

// Item 16: cancel() cuts a running task's sleep short.
TEST(Sleeps, CancelCutsASleepShort) {
  for (const bool fibers : {true, false}) {
    offload::executor ex{{.workers = 1, .fibers = fibers}};
    std::atomic<bool> sleeping{false};
    auto f = ex.submit([&] {
      sleeping = true;
      offload::this_task::sleep_for(500ms);
      return offload::this_task::stop_requested();
    });
    offload_test::eventually([&] {
      return sleeping.load();
    });
    std::this_thread::sleep_for(10ms);
    const auto t0 = steady::now();
    f.cancel();
    EXPECT_TRUE(f.get()) << "fibers " << fibers;
    EXPECT_LT(steady::now() - t0, 250ms)
        << "the sleep ran on after cancel (fibers " << fibers << ")";
  }
}

TEST(Sleeps, CancelCutsACoroutineSleepShort) {
  offload::executor ex{{.workers = 1}};
  std::atomic<bool> sleeping{false};
  auto f = ex.submit([&]() -> offload::task<int> {
    sleeping = true;
    co_await offload::sleep_for(500ms);
    co_return 1;
  });
  offload_test::eventually([&] {
    return sleeping.load();
  });
  std::this_thread::sleep_for(10ms);
  const auto t0 = steady::now();
  f.cancel();
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  EXPECT_LT(steady::now() - t0, 250ms) << "the coroutine's sleep ran on after cancel";
}

TEST(Sleeps, ManyCancelledSleepsLeaveNoTimerEntries) {
  offload::executor ex{{.workers = 1}};
  std::vector<offload::future<void>> fs;
  for (int i = 0; i < 200; ++i)
    fs.push_back(ex.submit([] {
      offload::this_task::sleep_for(1h);
    }));
  offload_test::eventually([&] {
    return ex.stats().suspended == 200;
  });
  for (auto& f : fs) f.cancel();
  for (auto& f : fs) f.get();
  ex.wait_idle();
  EXPECT_EQ(ex.metrics().lanes[offload::index_of(offload::lane::normal)].scheduled, 0u);
}

// Item 12: a cancelled delayed task releases its captures at cancel(), not at its due time.
TEST(TimerEntries, ACancelledDelayedTaskReleasesItsCapturesNow) {
  offload::executor ex{{.workers = 1}};
  ASSERT_EQ(g_alive.load(), 0);
  std::vector<offload::future<int>> fs;
  for (int i = 0; i < 1000; ++i) {
    const auto options =
        i % 2 == 0 ? offload::task_options{.delay = 1h}
                   : offload::task_options{.delay = 1h, .deadline = offload::clock::now() + 2h};
    fs.push_back(ex.submit(options, [t = tracked{}] {
      return 1;
    }));
  }
  EXPECT_EQ(g_alive.load(), 1000);
  for (auto& f : fs) EXPECT_TRUE(f.cancel());
  EXPECT_EQ(g_alive.load(), 0) << "cancelled delayed tasks still hold their captures";
  const auto m = ex.metrics();
  const auto& normal = m.lanes[offload::index_of(offload::lane::normal)];
  EXPECT_EQ(normal.scheduled, 0u);
  EXPECT_EQ(normal.completed[std::size_t(offload::task_outcome::cancelled)], 1000u);
  for (auto& f : fs) EXPECT_THROW(f.get(), offload::cancelled);
}

// A cancelled task waiting for its retry releases it now too.
TEST(TimerEntries, ACancelledRetryReleasesItsCapturesNow) {
  offload::executor ex{{.workers = 1}};
  auto f = ex.submit(
      offload::task_options{
          .retry = offload::retry_policy{.max_attempts = 3, .base_delay = 1h, .max_delay = 1h}},
      [t = tracked{}]() -> int {
        throw std::runtime_error("again");
      });
  offload_test::eventually([&] {
    return f.state() == offload::task_state::retrying;
  });
  EXPECT_EQ(g_alive.load(), 1);  // the failed attempt's (moved-from) callable is gone already
  // Once the retry waits in the timer, cancel() takes it back before it returns. (A cancel()
  // that lands while the retry is being put into the timer is met by the worker, which takes
  // the entry back at once: test Cancel.RetryWaitingTaskNeverRunsAgain and shutdown_races.)
  offload_test::eventually([&] {
    return ex.metrics().lanes[offload::index_of(offload::lane::normal)].scheduled == 1;
  });
  EXPECT_TRUE(f.cancel());
  EXPECT_EQ(g_alive.load(), 0);
}

// A task with a far deadline that finished keeps nothing alive until the deadline: its state
// (and the result in it) goes with its last future.
TEST(TimerEntries, AFinishedTaskDoesNotKeepItsStateUntilItsDeadline) {
  offload::executor ex{{.workers = 1}};
  {
    std::vector<offload::future<tracked>> fs;
    for (int i = 0; i < 100; ++i) {
      fs.push_back(ex.submit(offload::task_options{.deadline = offload::clock::now() + 1h}, [] {
        return tracked{};
      }));
    }
    for (auto& f : fs) f.wait();
    ex.wait_idle();
  }
  EXPECT_EQ(g_alive.load(), 0) << "finished tasks' states are held by their expiry entries";
}

}  // namespace
