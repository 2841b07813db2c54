#include <atomic>
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

}  // namespace
