// offload::task<T> coroutines: submitted like any task; co_await on futures, tasks, schedule()
// and sleep_for().

#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "unit/test_support.hpp"
#include <gtest/gtest.h>

#include <offload/offload.hpp>

using namespace std::chrono_literals;
using offload_test::eventually;

namespace {

offload::task<int> constant(int v) {
  co_return v;
}

offload::task<int> chain(int depth) {
  if (depth == 0)
    co_return 0;
  co_return co_await chain(depth - 1) + 1;
}

offload::task<long> fib(offload::executor& ex, int n) {
  if (n < 2)
    co_return n;
  auto left = ex.submit([&ex, n] {
    return fib(ex, n - 1);
  });                                          // in parallel
  const long right = co_await fib(ex, n - 2);  // inline
  co_return co_await std::move(left) + right;
}

}  // namespace

TEST(Coroutines, SubmittedCoroutineGivesAFutureOfItsValue) {
  offload::executor ex{offload::executor_options{.workers = 2}};
  offload::future<int> f = ex.submit([] {
    return constant(42);
  });
  EXPECT_EQ(f.get(), 42);
  auto g = ex.submit(
      [](int a, int b) -> offload::task<int> {
        co_return a + b;
      },
      1,
      2);
  EXPECT_EQ(g.get(), 3);
}

TEST(Coroutines, AwaitsFuturesAndNestedTasks) {
  offload::executor ex{offload::executor_options{.workers = 2}};
  auto f = ex.submit([&ex]() -> offload::task<int> {
    offload::future<int> a = ex.submit([] {
      return 20;
    });
    const int x = co_await std::move(a);
    // Symmetric transfer: no stack growth per level where the compiler makes the resumption a
    // tail call, which GCC does not under AddressSanitizer (there each level takes a frame).
    constexpr int k_depth = OFFLOAD_ASAN ? 100 : 1000;
    const int y = co_await chain(k_depth);
    co_return x + y - k_depth;
  });
  EXPECT_EQ(f.get(), 20);
}

TEST(Coroutines, ParallelFib) {
  offload::executor ex{offload::executor_options{.workers = 2}};
  EXPECT_EQ(ex.submit([&ex] {
                return fib(ex, 18);
              }).get(),
            2584);
}

TEST(Coroutines, ScheduleMovesTheCoroutineOntoTheExecutorInALane) {
  offload::executor ex{offload::executor_options{.workers = 2}};
  const auto caller = std::this_thread::get_id();
  auto body = [&ex, caller]() -> offload::task<bool> {
    co_await ex.schedule(offload::lane::critical);
    const bool moved = std::this_thread::get_id() != caller;
    // Spawned from here, a task inherits the coroutine's lane.
    co_await ex.submit([] {});
    co_return moved;
  };
  EXPECT_TRUE(offload::sync_wait(body()));
  const offload::metrics_snapshot m = ex.metrics();
  EXPECT_GE(m.lanes[offload::index_of(offload::lane::critical)].submitted, 2u);
}

// 200 coroutines sleep 1 s on one worker (manual clock): all asleep at once; one advance ends
// them all.
TEST(Coroutines, SleepingCoroutinesHoldNoWorker) {
  auto clock = std::make_shared<offload::manual_clock>();
  offload::executor ex{offload::executor_options{.workers = 1, .clock = clock}};
  std::atomic<int> asleep{0};
  std::vector<offload::future<int>> done;
  for (int i = 0; i < 200; ++i) {
    done.push_back(ex.submit([&asleep, i]() -> offload::task<int> {
      asleep.fetch_add(1);
      co_await offload::sleep_for(1s);
      co_return i;
    }));
  }
  eventually([&] {
    return asleep.load() == 200;
  });
  EXPECT_EQ(ex.submit([] {
                return 7;
              }).get(),
            7);  // the worker is free
  EXPECT_EQ(done.front().wait_for(10ms), std::future_status::timeout);
  clock->advance(1s);
  for (int i = 0; i < 200; ++i) EXPECT_EQ(done[static_cast<std::size_t>(i)].get(), i);
}

TEST(Coroutines, ExceptionsReachTheFutureAndRetriesRerunTheCoroutine) {
  offload::executor ex{offload::executor_options{.workers = 2}};
  auto failing = ex.submit([]() -> offload::task<int> {
    co_await offload::sleep_for(1ms);
    throw std::out_of_range("boom");
  });
  EXPECT_THROW(failing.get(), std::out_of_range);

  std::atomic<int> runs{0};
  auto retried = ex.submit(
      offload::task_options{.retry = offload::retry_policy{.max_attempts = 3, .base_delay = 1ms}},
      [&ex, &runs]() -> offload::task<unsigned> {
        runs.fetch_add(1);
        co_await ex.submit([] {});  // the attempt number survives the suspension
        const unsigned attempt = offload::this_task::attempt();
        if (attempt < 2)
          throw std::runtime_error("transient");
        co_return attempt;
      });
  EXPECT_EQ(retried.get(), 2u);
  EXPECT_EQ(runs.load(), 2);
}

TEST(Coroutines, CancelledQueuedCoroutineNeverRuns) {
  offload::executor ex{offload::executor_options{.workers = 1}};
  offload_test::gate hold;
  auto blocker = ex.submit([&] {
    hold.wait();
  });
  std::atomic<bool> ran{false};
  auto f = ex.submit([&ran]() -> offload::task<int> {
    ran.store(true);
    co_return 1;
  });
  EXPECT_TRUE(f.cancel());
  hold.open();
  blocker.get();
  ex.wait_idle();
  EXPECT_FALSE(ran.load());
  EXPECT_THROW(f.get(), offload::cancelled);
}

TEST(Coroutines, StopRequestedIsSeenAfterAResumption) {
  offload::executor ex{offload::executor_options{.workers = 2}};
  offload::promise<void> p;
  auto pf = std::make_shared<offload::future<void>>(p.get_future());
  std::atomic<bool> waiting{false};
  auto f = ex.submit([pf, &waiting]() -> offload::task<bool> {
    waiting.store(true);
    co_await std::move(*pf);
    co_return offload::this_task::stop_requested();
  });
  eventually([&] {
    return waiting.load();
  });
  EXPECT_FALSE(f.cancel());  // running: the request is recorded, the task sees it
  p.set_value();
  EXPECT_TRUE(f.get());
}

TEST(Coroutines, SyncWaitOutsideAnExecutor) {
  auto body = []() -> offload::task<int> {
    co_await offload::sleep_for(1ms);
    co_return co_await constant(5);
  };
  EXPECT_EQ(offload::sync_wait(body()), 5);
}

// A coroutine resumed inline inside another task's completion (it was awaiting from outside the
// pool) keeps its own (empty) task context, not that task's.
TEST(Coroutines, InlineResumptionKeepsTheCoroutinesContext) {
  offload::executor ex{offload::executor_options{.workers = 1}};
  auto body = [&ex]() -> offload::task<bool> {
    co_await ex.submit([] {
      return 1;
    });  // resumed inline where that task completes
    co_await ex.submit([] {
      return 2;
    });
    co_return !offload::this_task::stop_requested() && offload::this_task::attempt() == 1;
  };
  EXPECT_TRUE(offload::sync_wait(body()));
}

// Retries call the coroutine factory again with intact arguments.
TEST(Coroutines, RetriesSeeTheirArgumentsIntact) {
  offload::executor ex{offload::executor_options{.workers = 1}};
  auto f = ex.submit(
      offload::task_options{.retry = offload::retry_policy{.max_attempts = 2, .base_delay = 1ms}},
      [](std::string s) -> offload::task<std::size_t> {
        if (offload::this_task::attempt() == 1)
          throw std::runtime_error("transient");
        co_return s.size();
      },
      std::string("twelve chars"));
  EXPECT_EQ(f.get(), 12u);
}
