#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <offload/detail/event_count.hpp>

namespace {

using offload::detail::event_count;

TEST(EventCount, NotifyWithoutWaitersDoesNothing) {
  event_count ec;
  ec.notify_one();
  ec.notify_all();
  EXPECT_EQ(ec.waiters_hint(), 0u);
}

TEST(EventCount, CommitAfterNotifyReturnsAtOnce) {
  event_count ec;
  auto key = ec.prepare_wait();
  ec.notify_one();      // happens between prepare and commit: commit must not sleep
  ec.commit_wait(key);  // would hang (test timeout) if the wake-up were lost
  EXPECT_EQ(ec.waiters_hint(), 0u);
}

TEST(EventCount, CancelWaitWithdraws) {
  event_count ec;
  (void)ec.prepare_wait();
  EXPECT_EQ(ec.waiters_hint(), 1u);
  ec.cancel_wait();
  EXPECT_EQ(ec.waiters_hint(), 0u);
}

TEST(EventCount, TimedCommitReturns) {
  event_count ec;
  auto key = ec.prepare_wait();
  ec.commit_wait(key, std::chrono::milliseconds(1));
  EXPECT_EQ(ec.waiters_hint(), 0u);
}

// Producers publish items; consumers sleep on the event count when they see none. A lost
// wake-up leaves a consumer asleep with items pending: the test then hangs into its timeout.
TEST(EventCount, NoLostWakeupsUnderPingPong) {
  constexpr int k_items = 100'000;
  event_count ec;
  std::atomic<int> available{0};
  std::atomic<int> consumed{0};
  auto try_take = [&] {
    int n = available.load(std::memory_order_acquire);
    while (n > 0) {
      if (available.compare_exchange_weak(n, n - 1, std::memory_order_acq_rel))
        return true;
    }
    return false;
  };
  std::vector<std::thread> consumers;
  for (int c = 0; c < 2; ++c) {
    consumers.emplace_back([&] {
      while (consumed.load(std::memory_order_relaxed) < k_items) {
        if (try_take()) {
          consumed.fetch_add(1, std::memory_order_relaxed);
          continue;
        }
        auto key = ec.prepare_wait();
        if (try_take()) {
          ec.cancel_wait();
          consumed.fetch_add(1, std::memory_order_relaxed);
          continue;
        }
        if (consumed.load(std::memory_order_relaxed) >= k_items) {
          ec.cancel_wait();
          break;
        }
        ec.commit_wait(key);
      }
    });
  }
  for (int i = 0; i < k_items; ++i) {
    available.fetch_add(1, std::memory_order_release);
    ec.notify_one();
  }
  while (consumed.load() < k_items) std::this_thread::yield();
  ec.notify_all();
  for (auto& t : consumers) t.join();
  EXPECT_EQ(consumed.load(), k_items);
}

// The condition is published with a plain release store (as a deque push publishes a task): the
// only store-load order between it and the notifier's look at the waiters is the event count's
// own barrier, in release builds on Linux the compiler barrier paired with the waiter's
// membarrier() (asymmetric_barrier). Each round the consumer is likely to be asleep, so most
// rounds exercise the race between its prepare_wait() and the producer's notify. A lost wake-up
// leaves the consumer asleep and the producer spinning: the test hangs into its timeout.
// What it cannot do is prove the barrier: the store-buffer window it guards is nanoseconds wide,
// and a build with the waiter's membarrier removed passed 5 runs of it. The protocol is checked
// by the Relacy model (tests/model/event_count_model.cpp, symmetric fences); the asymmetric
// substitution rests on membarrier(2)'s documented guarantee.
TEST(EventCount, NoLostWakeupsWhenTheConditionIsAPlainStore) {
  constexpr std::uint32_t k_rounds = 20'000;
  ::testing::Test::RecordProperty(
      "barrier",
      offload::detail::asymmetric_barrier::expedited() ? "membarrier" : "seq_cst fences");
  event_count ec;
  std::atomic<std::uint32_t> published{0};
  std::atomic<std::uint32_t> seen{0};
  std::thread consumer([&] {
    for (std::uint32_t want = 1; want <= k_rounds; ++want) {
      // acquire loads of `published` pair with the producer's release store; `seen`'s release
      // store pairs with the producer's acquire load.
      while (published.load(std::memory_order_acquire) < want) {
        auto key = ec.prepare_wait();
        if (published.load(std::memory_order_acquire) >= want) {
          ec.cancel_wait();
          break;
        }
        ec.commit_wait(key);
      }
      seen.store(want, std::memory_order_release);
    }
  });
  for (std::uint32_t round = 1; round <= k_rounds; ++round) {
    published.store(round, std::memory_order_release);  // pairs with the consumer's acquire loads
    ec.notify_one();
    while (seen.load(std::memory_order_acquire) < round) std::this_thread::yield();
  }
  consumer.join();
  EXPECT_EQ(seen.load(), k_rounds);
  EXPECT_EQ(ec.waiters_hint(), 0u);
}

}  // namespace
