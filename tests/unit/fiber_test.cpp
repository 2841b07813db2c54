// Tasks that wait inside a worker suspend their fiber instead of blocking the worker.

#include <array>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "unit/test_support.hpp"
#include <gtest/gtest.h>

#include <offload/offload.hpp>

using namespace std::chrono_literals;
using offload_test::eventually;

namespace {

#if defined(__SANITIZE_THREAD__)
constexpr bool k_tsan = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr bool k_tsan = true;
#else
constexpr bool k_tsan = false;
#endif
#else
constexpr bool k_tsan = false;
#endif

offload::executor_options one_worker() {
  return offload::executor_options{.workers = 1};
}

}  // namespace

// 1000 tasks sleep 100 ms each on one worker: with the manual clock, all 1000 are asleep at once
// (none holds the worker), and one advance of the clock finishes them all.
TEST(Fibers, ThousandSleepingTasksShareOneWorker) {
  auto clock = std::make_shared<offload::manual_clock>();
  offload::executor_options options = one_worker();
  options.clock = clock;
  offload::executor ex{options};
  std::atomic<int> asleep{0};
  std::vector<offload::future<int>> done;
  for (int i = 0; i < 1000; ++i) {
    done.push_back(ex.submit([&asleep, i] {
      asleep.fetch_add(1);
      offload::this_task::sleep_for(100ms);
      return i;
    }));
  }
  eventually([&] {
    return asleep.load() == 1000 && ex.stats().suspended == 1000;
  });
  for (auto& f : done) EXPECT_FALSE(f.is_ready());
  clock->advance(99ms);
  EXPECT_EQ(done.back().wait_for(20ms), std::future_status::timeout);  // not before the 100 ms
  clock->advance(1ms);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(done[static_cast<std::size_t>(i)].get(), i);
}

// The same on the real clock: serially this would take 100 s.
TEST(Fibers, ThousandRealSleepsFinishTogether) {
  offload::executor ex{one_worker()};
  const auto start = offload::clock::now();
  std::vector<offload::future<void>> done;
  for (int i = 0; i < 1000; ++i) {
    done.push_back(ex.submit([] {
      const auto t0 = offload::clock::now();
      offload::this_task::sleep_for(100ms);
      if (offload::clock::now() - t0 < 100ms)
        throw std::runtime_error("woke early");
    }));
  }
  for (auto& f : done) f.get();
  EXPECT_LT(offload::clock::now() - start, 20s);  // far below 1000 × 100 ms
}

// 5000 tasks blocked on one promise, on one worker: other tasks keep running meanwhile, and all
// 5000 resume when the promise is set.
TEST(Fibers, FiveThousandWaitersOnOnePromise) {
  offload::executor ex{one_worker()};
  offload::promise<int> p;
  // wait() may be called by many waiters at once; each attaches its own resumption.
  auto shared = std::make_shared<offload::future<int>>(p.get_future());
  const int waiters = k_tsan ? 1000 : 5000;
  std::atomic<int> started{0};
  std::vector<offload::future<int>> done;
  for (int i = 0; i < waiters; ++i) {
    done.push_back(ex.submit([&started, shared, i] {
      started.fetch_add(1);
      shared->wait();
      return i;
    }));
  }
  eventually([&] {
    return started.load() == waiters;
  });
  // Other work still runs while they wait.
  for (int i = 0; i < 100; ++i)
    EXPECT_EQ(ex.submit([i] {
                  return i * 2;
                }).get(),
              i * 2);
  EXPECT_EQ(ex.stats().suspended, static_cast<std::uint64_t>(waiters));
  p.set_value(7);
  for (int i = 0; i < waiters; ++i) EXPECT_EQ(done[static_cast<std::size_t>(i)].get(), i);
  EXPECT_EQ(shared->get(), 7);
}

// A chain of 1000 tasks, each waiting on the next one's future, on one worker.
TEST(Fibers, DeepChainOfWaitsOnOneWorker) {
  offload::executor ex{offload::executor_options{.workers = 1, .fiber_stack_size = 64 << 10}};
  std::function<int(int)> chain = [&](int depth) -> int {
    if (depth == 0)
      return 0;
    return ex.submit(chain, depth - 1).get() + 1;
  };
  EXPECT_EQ(ex.submit(chain, 1000).get(), 1000);
}

// The same chain through task groups.
TEST(Fibers, DeepChainOfTaskGroupsOnOneWorker) {
  offload::executor ex{offload::executor_options{.workers = 1, .fiber_stack_size = 64 << 10}};
  std::atomic<int> leaves{0};
  std::function<void(int)> chain = [&](int depth) {
    if (depth == 0) {
      leaves.fetch_add(1);
      return;
    }
    offload::task_group g{ex};
    g.run([&chain, depth] {
      chain(depth - 1);
    });
    g.wait();
  };
  ex.submit(chain, 1000).get();
  EXPECT_EQ(leaves.load(), 1);
}

// Fibers are pooled: a million waits do not grow the number of stacks.
TEST(Fibers, StacksAreReusedAcrossManyWaits) {
  offload::executor ex{offload::executor_options{.workers = 2}};
  const int rounds = k_tsan ? 20'000 : 1'000'000;
  ex.submit([&] {
      for (int i = 0; i < rounds; ++i) offload::this_task::yield();
    }).get();
  std::vector<offload::future<void>> waits;
  for (int i = 0; i < 8; ++i) {
    waits.push_back(ex.submit([&] {
      for (int k = 0; k < rounds / 40; ++k) ex.submit([] {}).get();
    }));
  }
  for (auto& f : waits) f.get();
  const auto stats = ex.stats();
  // Per worker: the running fiber plus at most 16 spares (and the 8 waiters' own).
  EXPECT_LE(stats.fibers, 2u * 17 + 8);
  EXPECT_EQ(stats.suspended, 0u);
}

// yield() lets one other queued task run before the caller continues. The first task holds the
// only worker without suspending until the second is queued, so the second can only run in yield().
TEST(Fibers, YieldLetsAQueuedTaskRunFirst) {
  offload::executor ex{one_worker()};
  std::atomic<bool> other_ran{false};
  std::atomic<bool> second_queued{false};
  auto first = ex.submit([&] {
    while (!second_queued.load()) std::this_thread::yield();
    const bool before = other_ran.load();
    offload::this_task::yield();
    return !before && other_ran.load();
  });
  auto second = ex.submit([&] {
    other_ran.store(true);
  });
  second_queued.store(true);
  EXPECT_TRUE(first.get());
  second.get();
}

// A suspended task keeps its own attempt number and cancellation view while others run.
TEST(Fibers, TaskContextSurvivesSuspension) {
  offload::executor ex{one_worker()};
  offload::promise<void> release;
  auto gate = std::make_shared<offload::future<void>>(release.get_future());
  std::atomic<bool> asleep{false};
  auto first = ex.submit(
      offload::task_options{.retry = offload::retry_policy{.max_attempts = 3, .base_delay = 1ms}},
      [&, gate] {
        const unsigned attempt = offload::this_task::attempt();
        if (attempt == 1)
          throw std::runtime_error("first attempt fails");
        asleep.store(true);
        gate->wait();
        return attempt == offload::this_task::attempt() ? attempt : 0u;
      });
  eventually([&] {
    return asleep.load();
  });
  // Another task runs on the same worker while the first is suspended.
  EXPECT_EQ(ex.submit([] {
                return offload::this_task::attempt();
              }).get(),
            1u);
  release.set_value();
  EXPECT_EQ(first.get(), 2u);
}

// A wait inside a catch block, for a task the waiter spawned: it runs inline (help-first).
TEST(Fibers, WaitInsideCatchBlockStillCompletes) {
  offload::executor ex{one_worker()};
  auto f = ex.submit([&] {
    try {
      throw std::runtime_error("x");
    } catch (const std::exception&) {
      return ex
          .submit([] {
            return 5;
          })
          .get();
    }
  });
  EXPECT_EQ(f.get(), 5);
}

// Inside a catch block a task still suspends (each fiber has its own exception state): here
// the awaited task sleeps on the same, only worker, so a wait that blocked would never end.
TEST(Fibers, WaitInsideCatchBlockSuspends) {
  offload::executor ex{one_worker()};
  auto f = ex.submit([&] {
    try {
      throw std::runtime_error("outer");
    } catch (const std::exception&) {
      auto child = ex.submit([] {
        offload::this_task::sleep_for(5ms);
        try {
          throw std::logic_error("inner");  // another fiber's exceptions meanwhile
        } catch (const std::logic_error&) {
        }
        return 2;
      });
      offload::this_task::yield();  // the child starts and sleeps
      const int v = child.get();
      try {
        throw;  // the exception being handled is still this fiber's
      } catch (const std::runtime_error& e) {
        return std::string(e.what()) == "outer" ? v : -1;
      }
    }
  });
  EXPECT_EQ(f.get(), 2);
}

// A task_group destroyed during unwinding waits for a child that sleeps on the same worker.
TEST(Fibers, TaskGroupWaitDuringUnwinding) {
  offload::executor ex{one_worker()};
  std::atomic<bool> child_done{false};
  auto f = ex.submit([&] {
    offload::task_group g{ex};
    g.run([&] {
      offload::this_task::sleep_for(5ms);
      child_done.store(true);
    });
    offload::this_task::yield();  // the child starts and sleeps
    throw std::runtime_error("unwind with a pending group");
  });
  EXPECT_THROW(f.get(), std::runtime_error);
  EXPECT_TRUE(child_done.load());
}

// shutdown(cancel) cuts sleeps short instead of waiting them out (here: an hour on a manual
// clock that nobody advances).
TEST(Fibers, CancelShutdownWakesSleepers) {
  auto clock = std::make_shared<offload::manual_clock>();
  offload::executor ex{offload::executor_options{.workers = 1, .clock = clock}};
  std::atomic<bool> asleep{false};
  auto f = ex.submit([&] {
    asleep.store(true);
    offload::this_task::sleep_for(std::chrono::hours(1));
    return 1;
  });
  eventually([&] {
    return asleep.load() && ex.stats().suspended == 1;
  });
  ex.shutdown(offload::shutdown_mode::cancel);
  EXPECT_EQ(f.get(), 1);  // it ran to its end, its sleep cut short
}

// A task suspended in a wait does not make its worker look stuck.
TEST(Fibers, SuspendedTaskIsNotAStuckWorker) {
  offload::executor ex{offload::executor_options{.workers = 1, .stuck_after = 1ms}};
  offload::promise<void> p;
  auto pf = std::make_shared<offload::future<void>>(p.get_future());
  std::atomic<bool> waiting{false};
  auto f = ex.submit([&, pf] {
    waiting.store(true);
    pf->wait();
  });
  eventually([&] {
    return waiting.load() && ex.stats().suspended == 1;
  });
  (void)ex.health();
  std::this_thread::sleep_for(5ms);
  EXPECT_EQ(ex.health().workers_stuck, 0u);
  p.set_value();
  f.get();
}

// The same when the suspended fiber holds two tasks: a parent that ran its child nested.
TEST(Fibers, SuspendedNestedTasksAreNotAStuckWorker) {
  offload::executor ex{offload::executor_options{.workers = 1, .stuck_after = 1ms}};
  offload::promise<void> p;
  auto pf = std::make_shared<offload::future<void>>(p.get_future());
  std::atomic<bool> waiting{false};
  auto f = ex.submit([&, pf] {
    // The child runs nested on this fiber (help-first), then waits: both are suspended.
    ex.submit([&, pf] {
        waiting.store(true);
        pf->wait();
      }).get();
  });
  eventually([&] {
    return waiting.load() && ex.stats().suspended == 1;
  });
  (void)ex.health();
  std::this_thread::sleep_for(5ms);
  EXPECT_EQ(ex.health().workers_stuck, 0u);
  p.set_value();
  f.get();
}

// With fibers off, waits block the worker (helping), as before.
TEST(Fibers, OffMeansWaitsHelp) {
  offload::executor ex{offload::executor_options{.workers = 1, .fibers = false}};
  std::function<int(int)> chain = [&](int depth) -> int {
    return depth == 0 ? 0 : ex.submit(chain, depth - 1).get() + 1;
  };
  EXPECT_EQ(ex.submit(chain, 50).get(), 50);
  EXPECT_EQ(ex.stats().fibers, 0u);
}

// With fibers off, a task waiting on an event helps run queued work: the setter is queued
// behind it on the only worker.
TEST(Fibers, OffEventWaitHelps) {
  offload::executor ex{offload::executor_options{.workers = 1, .fibers = false}};
  offload::manual_reset_event ev;
  auto waiter = ex.submit([&] {
    ex.post([&] {
      ev.set();
    });
    ev.wait();
    return 1;
  });
  EXPECT_EQ(waiter.get(), 1);
}

// With fibers off, a submitted coroutine that suspends still completes on one worker.
TEST(Fibers, OffCoroutineCompletes) {
  offload::executor ex{offload::executor_options{.workers = 1, .fibers = false}};
  auto f = ex.submit([&ex]() -> offload::task<int> {
    co_await ex.schedule();
    co_return co_await ex.submit([] {
      return 4;
    });
  });
  EXPECT_EQ(f.get(), 4);
}

// Two tasks that wake each other forever (ping-pong through events) on the only worker do not
// starve a queued task.
TEST(Fibers, PingPongingFibersDoNotStarveQueuedTasks) {
  offload::executor ex{one_worker()};
  std::atomic<bool> stop{false};
  auto ping = std::make_shared<std::array<offload::manual_reset_event, 2>>();
  auto player = [&stop, ping](int me) {
    while (!stop.load()) {
      (*ping)[static_cast<std::size_t>(me)].wait();
      (*ping)[static_cast<std::size_t>(me)].reset();
      (*ping)[static_cast<std::size_t>(1 - me)].set();
    }
    (*ping)[static_cast<std::size_t>(1 - me)].set();
  };
  auto a = ex.submit(player, 0);
  auto b = ex.submit(player, 1);
  (*ping)[0].set();
  EXPECT_EQ(ex.submit([] {
                return 3;
              }).get(),
            3);  // runs despite the ping-pong
  stop.store(true);
  a.get();
  b.get();
}

// Shutdown while tasks sleep: they still sleep their full time, and everything completes.
TEST(Fibers, DrainWaitsForSleepingTasks) {
  std::vector<offload::future<bool>> done;
  {
    offload::executor ex{offload::executor_options{.workers = 2}};
    for (int i = 0; i < 50; ++i) {
      done.push_back(ex.submit([] {
        const auto t0 = offload::clock::now();
        offload::this_task::sleep_for(30ms);
        return offload::clock::now() - t0 >= 30ms;
      }));
    }
  }  // drains
  for (auto& f : done) EXPECT_TRUE(f.get());
}

// task_mutex: tasks that contend suspend; the count is exact and other tasks keep running.
TEST(Fibers, TaskMutexExcludesAndSuspends) {
  offload::executor ex{offload::executor_options{.workers = 2}};
  offload::task_mutex m;
  long counter = 0;  // guarded by m
  std::vector<offload::future<void>> done;
  const int tasks = 64, rounds = k_tsan ? 50 : 500;
  for (int t = 0; t < tasks; ++t) {
    done.push_back(ex.submit([&] {
      for (int r = 0; r < rounds; ++r) {
        std::lock_guard lock(m);
        const long seen = counter;
        if (r % 16 == 0)
          offload::this_task::yield();  // hold the lock across a suspension
        counter = seen + 1;
      }
    }));
  }
  // A thread outside the pool contends too.
  for (int r = 0; r < rounds; ++r) {
    std::lock_guard lock(m);
    ++counter;
  }
  for (auto& f : done) f.get();
  std::lock_guard lock(m);
  EXPECT_EQ(counter, static_cast<long>(tasks + 1) * rounds);
}

// One worker: a task waiting for a held task_mutex does not block the task that holds it.
TEST(Fibers, TaskMutexWaiterDoesNotHoldTheOnlyWorker) {
  offload::executor ex{one_worker()};
  offload::task_mutex m;
  offload::manual_reset_event holder_in;
  offload::manual_reset_event release;
  auto holder = ex.submit([&] {
    std::lock_guard lock(m);
    holder_in.set();
    release.wait();  // suspends while holding the mutex
    return 1;
  });
  holder_in.wait();
  auto waiter = ex.submit([&] {
    std::lock_guard lock(m);  // suspends: the holder has it
    return 2;
  });
  auto other = ex.submit([] {
    return 3;
  });
  EXPECT_EQ(other.get(), 3);  // the worker is free
  EXPECT_FALSE(waiter.is_ready());
  release.set();
  EXPECT_EQ(holder.get(), 1);
  EXPECT_EQ(waiter.get(), 2);
}

// manual_reset_event: every waiter (tasks and a thread) is released by set(); reset() re-arms it.
TEST(Fibers, ManualResetEventReleasesAllWaiters) {
  offload::executor ex{one_worker()};
  offload::manual_reset_event ev;
  std::atomic<int> waiting{0};
  std::vector<offload::future<int>> done;
  for (int i = 0; i < 200; ++i) {
    done.push_back(ex.submit([&, i] {
      waiting.fetch_add(1);
      ev.wait();
      return i;
    }));
  }
  eventually([&] {
    return waiting.load() == 200 && ex.stats().suspended == 200;
  });
  EXPECT_FALSE(ev.is_set());
  std::thread outside([&] {
    ev.wait();
  });
  ev.set();
  outside.join();
  for (int i = 0; i < 200; ++i) EXPECT_EQ(done[static_cast<std::size_t>(i)].get(), i);
  EXPECT_TRUE(ev.is_set());
  ev.reset();
  EXPECT_FALSE(ev.is_set());
  auto later = ex.submit([&] {
    ev.wait();
    return 9;
  });
  EXPECT_EQ(later.wait_for(10ms), std::future_status::timeout);
  ev.set();
  EXPECT_EQ(later.get(), 9);
}

TEST(Fibers, StackSizeIsValidated) {
  try {
    offload::executor ex{offload::executor_options{.fiber_stack_size = 1024}};
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("fiber_stack_size"), std::string::npos) << e.what();
  }
}
