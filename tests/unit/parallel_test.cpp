// parallel_for, post_bulk, task_group::cancel() and this_task::executor().
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "unit/test_support.hpp"
#include <gtest/gtest.h>

#include <offload/offload.hpp>

namespace {

using namespace std::chrono_literals;

class Parallel : public ::testing::TestWithParam<unsigned> {};

TEST_P(Parallel, ParallelForCallsEveryIndexOnce) {
  offload::executor ex{{.workers = GetParam()}};
  for (const int n : {0, 1, 2, 3, 7, 100, 4097, 100000}) {
    std::vector<std::atomic<int>> seen(static_cast<std::size_t>(n));
    offload::parallel_for(ex, 0, n, [&](int i) {
      seen[static_cast<std::size_t>(i)].fetch_add(1, std::memory_order_relaxed);
    });
    for (int i = 0; i < n; ++i)
      ASSERT_EQ(seen[static_cast<std::size_t>(i)].load(), 1) << "n " << n << " index " << i;
  }
}

TEST_P(Parallel, ParallelForTakesAnyIntegersWithoutOverflow) {
  offload::executor ex{{.workers = GetParam()}};
  std::atomic<long long> sum{0};
  std::atomic<int> calls{0};
  constexpr int lo = std::numeric_limits<int>::max() - 10;
  offload::parallel_for(ex, lo, std::numeric_limits<int>::max(), [&](int i) {
    sum.fetch_add(i);
    calls.fetch_add(1);
  });
  EXPECT_EQ(calls.load(), 10);
  long long want = 0;
  for (int i = lo; i < std::numeric_limits<int>::max(); ++i) want += i;
  EXPECT_EQ(sum.load(), want);
  // Mixed types (int and std::size_t), and an empty or reversed range.
  std::atomic<int> mixed{0};
  offload::parallel_for(ex, 5, std::size_t{9}, [&](std::size_t) {
    mixed.fetch_add(1);
  });
  EXPECT_EQ(mixed.load(), 4);
  offload::parallel_for(ex, 9, 5, [&](int) {
    ADD_FAILURE() << "a reversed range has no index";
  });
  // Narrow and mixed types are compared and counted by value.
  std::atomic<int> narrow{0};
  offload::parallel_for(ex, short{-1}, short{1}, [&](short i) {
    EXPECT_TRUE(i == -1 || i == 0) << i;
    narrow.fetch_add(1);
  });
  EXPECT_EQ(narrow.load(), 2);
  offload::parallel_for(ex, 5u, -1, [&](unsigned) {
    ADD_FAILURE() << "5u..-1 is empty";
  });
  EXPECT_THROW(offload::parallel_for(ex, -3, 5u, [](unsigned) {}), std::invalid_argument)
      << "-3 does not fit the common type (unsigned)";
}

TEST_P(Parallel, ParallelForOverARangeCallsEveryElement) {
  offload::executor ex{{.workers = GetParam()}};
  std::vector<int> v(10000);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<int>(i);
  offload::parallel_for(ex, v, [](int& x) {
    x *= 2;
  });
  for (std::size_t i = 0; i < v.size(); ++i) ASSERT_EQ(v[i], 2 * static_cast<int>(i));
  const std::vector<int>& cv = v;
  std::atomic<long long> sum{0};
  offload::parallel_for(
      ex, offload::task_options{.lane = offload::lane::high}, cv, [&](const int& x) {
        sum.fetch_add(x);
      });
  EXPECT_EQ(sum.load(), 10000LL * 9999);
}

TEST_P(Parallel, ParallelForSpreadsOverTheWorkers) {
  offload::executor ex{{.workers = GetParam()}};
  std::mutex m;
  std::vector<std::thread::id> threads;
  offload::parallel_for(ex, 0, 64, [&](int) {
    std::this_thread::sleep_for(1ms);
    if (offload::this_task::executor() != &ex)
      return;  // the calling thread, which runs part of the range too
    std::lock_guard lock(m);
    if (std::find(threads.begin(), threads.end(), std::this_thread::get_id()) == threads.end())
      threads.push_back(std::this_thread::get_id());
  });
  EXPECT_EQ(threads.size(), GetParam()) << "every worker took part in the loop";
}

TEST_P(Parallel, ParallelForInsideATaskHelpsAndNestsWithoutDeadlock) {
  offload::executor ex{{.workers = GetParam()}};
  std::atomic<int> n{0};
  ex.submit([&] {
      offload::parallel_for(ex, 0, 50, [&](int) {
        offload::parallel_for(ex, 0, 50, [&](int) {
          n.fetch_add(1, std::memory_order_relaxed);
        });
      });
    }).get();
  EXPECT_EQ(n.load(), 2500);
}

TEST_P(Parallel, ParallelForRethrowsTheFirstExceptionAndStopsStartingPieces) {
  offload::executor ex{{.workers = GetParam()}};
  std::atomic<int> calls{0};
  constexpr int n = 1'000'000;
  try {
    offload::parallel_for(ex, 0, n, [&](int i) {
      calls.fetch_add(1, std::memory_order_relaxed);
      if (i == 10)
        throw std::runtime_error("index 10");
    });
    FAIL() << "parallel_for returned";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "index 10");
  }
  EXPECT_LT(calls.load(), n) << "the loop stopped early";
  // The executor goes on.
  EXPECT_EQ(ex.submit([] {
                return 1;
              }).get(),
            1);
}

TEST_P(Parallel, ParallelForStopsWhenTheCallingTaskIsCancelled) {
  offload::executor ex{{.workers = GetParam()}};
  std::atomic<int> calls{0};
  std::atomic<bool> started{false};
  auto f = ex.submit([&] {
    offload::parallel_for(ex, 0, 1'000'000, [&](int) {
      started.store(true);
      calls.fetch_add(1, std::memory_order_relaxed);
      std::this_thread::sleep_for(10us);
    });
  });
  while (!started.load()) std::this_thread::yield();
  f.cancel();
  EXPECT_THROW(f.get(), offload::cancelled);
  EXPECT_LT(calls.load(), 1'000'000);
}

TEST_P(Parallel, ParallelForRefusesPolicyOptions) {
  offload::executor ex{{.workers = GetParam()}};
  EXPECT_THROW(offload::parallel_for(ex, offload::task_options{.delay = 1ms}, 0, 10, [](int) {}),
               std::invalid_argument);
}

TEST_P(Parallel, PostBulkCallsEveryIndexOnce) {
  offload::executor ex{{.workers = GetParam()}};
  for (const std::size_t n :
       {std::size_t{0}, std::size_t{1}, std::size_t{5}, std::size_t{100000}}) {
    auto seen = std::make_shared<std::vector<std::atomic<int>>>(n);
    ex.post_bulk(n, [seen](std::size_t i) {
      (*seen)[i].fetch_add(1, std::memory_order_relaxed);
    });
    ex.wait_idle();
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ((*seen)[i].load(), 1) << "index " << i;
  }
}

TEST_P(Parallel, PostBulkReportsEachFailureAndRunsTheRest) {
  std::atomic<int> reported{0};
  offload::executor ex{{.workers = GetParam(), .on_task_error = [&](std::exception_ptr) {
                          reported.fetch_add(1);
                        }}};
  std::atomic<int> ran{0};
  ex.post_bulk(1000, [&](std::size_t i) {
    ran.fetch_add(1);
    if (i % 100 == 0)
      throw std::runtime_error("bad index");
  });
  ex.wait_idle();
  EXPECT_EQ(ran.load(), 1000);
  EXPECT_EQ(reported.load(), 10);
  EXPECT_EQ(ex.stats().failed_detached, 10u);
}

TEST_P(Parallel, PostBulkKeepsItsLaneAndDestroysTheCallableAfterTheLastCall) {
  offload::executor ex{{.workers = GetParam()}};
  auto alive = std::make_shared<int>(0);
  std::weak_ptr<int> watch = alive;
  std::atomic<int> in_lane{0};
  ex.post_bulk(offload::task_options{.lane = offload::lane::low, .name = "bulk"},
               500,
               [alive = std::move(alive), &in_lane](std::size_t) {
                 if (offload::this_task::executor() != nullptr)
                   in_lane.fetch_add(1);
               });
  ex.wait_idle();
  EXPECT_EQ(in_lane.load(), 500);
  EXPECT_TRUE(watch.expired());
  EXPECT_GE(ex.metrics().of(offload::lane::low).submitted, 1u);
  EXPECT_THROW(
      ex.post_bulk(offload::task_options{.deadline = offload::clock::now()}, 1, [](std::size_t) {}),
      std::invalid_argument);
}

TEST_P(Parallel, ThisTaskExecutorIsTheRunningOne) {
  offload::executor ex{{.workers = GetParam()}};
  EXPECT_EQ(offload::this_task::executor(), nullptr);
  EXPECT_EQ(ex.submit([] {
                return offload::this_task::executor();
              }).get(),
            &ex);
  offload::executor other{{.workers = 1}};
  EXPECT_EQ(other
                .submit([] {
                  return offload::this_task::executor();
                })
                .get(),
            &other);
  EXPECT_THROW(offload::task_group{}, std::logic_error);
}

int fib(int n) {
  if (n < 2)
    return n;
  int a = 0;
  offload::task_group g;  // the running task's executor
  g.run([&] {
    a = fib(n - 1);
  });
  const int b = fib(n - 2);
  g.wait();
  return a + b;
}

TEST_P(Parallel, TaskGroupWithoutAnExecutorUsesTheRunningOne) {
  offload::executor ex{{.workers = GetParam()}};
  EXPECT_EQ(ex.submit([] {
                return fib(20);
              }).get(),
            6765);
}

TEST_P(Parallel, CancelledGroupSkipsWhatDidNotStartAndStopsWhatRuns) {
  offload::executor ex{{.workers = GetParam()}};
  offload::task_group g{ex};
  std::atomic<int> running{0}, saw_stop{0}, started{0};
  const int blockers = static_cast<int>(GetParam());
  for (int i = 0; i < blockers; ++i)
    g.run([&] {
      started.fetch_add(1);
      running.fetch_add(1);
      while (!offload::this_task::stop_requested()) std::this_thread::yield();
      saw_stop.fetch_add(1);
    });
  while (running.load() < blockers) std::this_thread::yield();
  // Every worker is busy: these wait in the queue, and never run once the group is cancelled.
  for (int i = 0; i < 100; ++i)
    g.run([&] {
      started.fetch_add(1);
    });
  EXPECT_FALSE(g.is_cancelled());
  g.cancel();
  EXPECT_TRUE(g.is_cancelled());
  EXPECT_THROW(g.wait(), offload::cancelled);
  EXPECT_EQ(saw_stop.load(), blockers);
  EXPECT_EQ(started.load(), blockers);
  // Stays cancelled: a later task never runs either.
  g.run([&] {
    started.fetch_add(1);
  });
  EXPECT_THROW(g.wait(), offload::cancelled);
  EXPECT_EQ(started.load(), blockers);
}

TEST_P(Parallel, AnExceptionComesBeforeTheCancellation) {
  offload::executor ex{{.workers = GetParam()}};
  offload::task_group g{ex};
  g.run([] {
    throw std::runtime_error("first");
  });
  try {
    g.wait();
    FAIL();
  } catch (const std::runtime_error&) {
  }
  g.run([] {
    throw std::runtime_error("second");
  });
  std::this_thread::sleep_for(1ms);
  g.cancel();
  try {
    g.wait();
    FAIL() << "wait() returned";
  } catch (const offload::cancelled&) {
    // It had not started: cancelled instead. Both are correct; what matters is that wait() threw.
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "second");  // it ran before cancel(): its exception is reported
  }
}

TEST_P(Parallel, TaskGroupRunWithOptionsUsesTheLane) {
  offload::executor ex{{.workers = GetParam()}};
  offload::task_group g{ex};
  for (int i = 0; i < 10; ++i) g.run(offload::task_options{.lane = offload::lane::critical}, [] {});
  g.wait();
  EXPECT_EQ(ex.metrics().of(offload::lane::critical).submitted, 10u);
  EXPECT_THROW(g.run(offload::task_options{.key = "k"}, [] {}), std::invalid_argument);
}

INSTANTIATE_TEST_SUITE_P(Workers, Parallel, ::testing::Values(1u, 2u, 4u));

}  // namespace
