// Many-thread soak tests with exactly-once accounting. Run in release and under TSan.

#include <atomic>
#include <chrono>
#include <random>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <offload/offload.hpp>

namespace {

// Several producers submit from outside; every task runs exactly once.
TEST(Stress, ManyProducersEachTaskRunsExactlyOnce) {
  constexpr int k_producers = 4;
  constexpr int k_per_producer = 25'000;
  offload::executor ex{{.workers = 2}};
  std::vector<std::atomic<unsigned char>> runs(k_producers * k_per_producer);
  std::vector<std::thread> producers;
  for (int p = 0; p < k_producers; ++p) {
    producers.emplace_back([&, p] {
      for (int i = 0; i < k_per_producer; ++i) {
        const auto id = static_cast<std::size_t>(p * k_per_producer + i);
        ex.post([&runs, id] {
          runs[id].fetch_add(1, std::memory_order_relaxed);
        });
      }
    });
  }
  for (auto& t : producers) t.join();
  ex.wait_idle();
  for (std::size_t i = 0; i < runs.size(); ++i) ASSERT_EQ(runs[i].load(), 1) << i;
}

// A spawn tree inside the pool: tasks push to their own deque, idle workers steal.
void spawn_tree(offload::executor& ex, std::atomic<long>& leaves, int depth) {
  if (depth == 0) {
    leaves.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  for (int i = 0; i < 2; ++i)
    ex.post([&ex, &leaves, depth] {
      spawn_tree(ex, leaves, depth - 1);
    });
}

TEST(Stress, StealingSpawnTreeCountsEveryLeaf) {
  for (unsigned workers : {2u, 4u}) {
    offload::executor ex{{.workers = workers}};
    std::atomic<long> leaves{0};
    ex.post([&] {
      spawn_tree(ex, leaves, 16);
      // Hold this worker until another has stolen from its deque, which holds the tree's two
      // children: without the hold, one worker could run the whole tree before another wakes.
      // Bounded, so a lost wake-up fails the test instead of hanging it.
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (ex.stats().steals == 0 && std::chrono::steady_clock::now() < until)
        std::this_thread::yield();
    });
    ex.wait_idle();
    EXPECT_EQ(leaves.load(), 1L << 16);
    EXPECT_GT(ex.stats().steals, 0u);
  }
}

// cancel() races with the worker starting the task: exactly one of them wins.
TEST(Stress, CancelRacingWithRunHasOneWinner) {
  offload::executor ex{{.workers = 2}};
  constexpr int k_tasks = 20'000;
  std::vector<std::atomic<unsigned char>> runs(k_tasks);
  std::vector<offload::future<void>> futures;
  std::vector<bool> cancelled(k_tasks);
  for (int i = 0; i < k_tasks; ++i) {
    futures.push_back(ex.submit([&runs, i] {
      runs[static_cast<std::size_t>(i)].fetch_add(1);
    }));
    if (i % 2 == 0)
      cancelled[static_cast<std::size_t>(i)] = futures.back().cancel();
  }
  ex.wait_idle();
  for (int i = 0; i < k_tasks; ++i) {
    const auto idx = static_cast<std::size_t>(i);
    if (cancelled[idx]) {
      EXPECT_EQ(runs[idx].load(), 0);
      EXPECT_THROW(futures[idx].get(), offload::cancelled);
    } else {
      EXPECT_EQ(runs[idx].load(), 1);
      futures[idx].get();
    }
  }
}

// Continuations attached while the antecedent completes: each runs exactly once.
TEST(Stress, ContinuationsAttachedDuringCompletion) {
  offload::executor ex{{.workers = 2}};
  std::atomic<int> n{0};
  std::vector<offload::future<int>> chained;
  for (int i = 0; i < 20'000; ++i) {
    chained.push_back(ex.submit([i] {
                          return i;
                        }).then([&n](int x) {
      n.fetch_add(1);
      return x + 1;
    }));
  }
  long sum = 0;
  for (auto& f : chained) sum += f.get();
  EXPECT_EQ(n.load(), 20'000);
  EXPECT_EQ(sum, 20'000L * 20'001 / 2);
}

// Promises set from many threads while consumers wait from other threads and workers.
TEST(Stress, PromisesAndWhenAllAcrossThreads) {
  offload::executor ex{{.workers = 2}};
  constexpr int k_rounds = 2000;
  for (int r = 0; r < k_rounds; r += 100) {
    std::vector<offload::promise<int>> ps(100);
    std::vector<offload::future<int>> fs;
    for (auto& p : ps) fs.push_back(p.get_future());
    auto all = offload::when_all(std::move(fs));
    std::thread setter([&] {
      for (int i = 0; i < 100; i += 2) ps[static_cast<std::size_t>(i)].set_value(i);
    });
    for (int i = 1; i < 100; i += 2) {
      ex.post([&ps, i] {
        ps[static_cast<std::size_t>(i)].set_value(i);
      });
    }
    auto results = all.get();
    setter.join();
    ex.wait_idle();
    long sum = 0;
    for (auto& f : results) sum += f.get();
    EXPECT_EQ(sum, 99 * 100 / 2);
  }
}

// Repeated construction and destruction with work in flight: nothing leaks, nothing hangs.
TEST(Stress, CreateAndDestroyWithWorkInFlight) {
  std::atomic<long> ran{0};
  for (int i = 0; i < 200; ++i) {
    offload::executor ex{{.workers = 2, .spin_before_park = std::chrono::microseconds(i % 3 * 20)}};
    for (int k = 0; k < 100; ++k)
      ex.post([&] {
        ran.fetch_add(1);
      });
  }
  EXPECT_EQ(ran.load(), 200 * 100);
}

// Fork-join under contention: many external threads each run a recursive group.
int fib(offload::executor& ex, int n) {
  if (n < 2)
    return n;
  int a = 0;
  offload::task_group g{ex};
  g.run([&] {
    a = fib(ex, n - 1);
  });
  const int b = fib(ex, n - 2);
  g.wait();
  return a + b;
}

TEST(Stress, ConcurrentForkJoinFromManyThreads) {
  offload::executor ex{{.workers = 2}};
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&] {
      for (int i = 0; i < 5; ++i) {
        if (ex.submit([&] {
                return fib(ex, 18);
              }).get() == 2584)
          ok.fetch_add(1);
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(ok.load(), 20);
}

}  // namespace
