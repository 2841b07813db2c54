#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <offload/detail/chase_lev_deque.hpp>

namespace {

using offload::detail::chase_lev_deque;
using offload::detail::steal_status;

TEST(ChaseLevDeque, OwnerPopsLifo) {
  chase_lev_deque<int> d(4);
  for (int i = 0; i < 3; ++i) d.push(i);
  EXPECT_EQ(*d.pop(), 2);
  EXPECT_EQ(*d.pop(), 1);
  EXPECT_EQ(*d.pop(), 0);
  EXPECT_FALSE(d.pop().has_value());
}

TEST(ChaseLevDeque, ThievesStealFifo) {
  chase_lev_deque<int> d(4);
  for (int i = 0; i < 3; ++i) d.push(i);
  for (int i = 0; i < 3; ++i) {
    auto r = d.steal();
    ASSERT_EQ(r.status, steal_status::success);
    EXPECT_EQ(r.value, i);
  }
  EXPECT_EQ(d.steal().status, steal_status::empty);
}

// Sweeps tiny initial capacities so that wrap-around and growth run.
class ChaseLevDequeCapacity : public ::testing::TestWithParam<int> {};

TEST_P(ChaseLevDequeCapacity, GrowsAndKeepsEveryValue) {
  chase_lev_deque<int> d(GetParam());
  // Interleave pushes, pops and steals so the indices wrap the buffer several times.
  std::vector<int> seen(5000, 0);
  int next = 0;
  for (int round = 0; round < 50; ++round) {
    for (int i = 0; i < 60; ++i) d.push(next++);
    for (int i = 0; i < 20; ++i) ++seen[static_cast<std::size_t>(*d.pop())];
    for (int i = 0; i < 20; ++i) {
      auto r = d.steal();
      ASSERT_EQ(r.status, steal_status::success);
      ++seen[static_cast<std::size_t>(r.value)];
    }
  }
  while (auto v = d.pop()) ++seen[static_cast<std::size_t>(*v)];
  for (int i = 0; i < next; ++i) EXPECT_EQ(seen[static_cast<std::size_t>(i)], 1) << i;
  EXPECT_EQ(d.size_hint(), 0);
}

INSTANTIATE_TEST_SUITE_P(Capacities, ChaseLevDequeCapacity, ::testing::Values(2, 4, 8, 64, 1024));

// Owner pushes and pops while thieves steal: every value is taken exactly once.
TEST(ChaseLevDeque, ConcurrentStealersTakeEachValueExactlyOnce) {
  constexpr int k_values = 200'000;
  constexpr int k_thieves = 3;
  chase_lev_deque<int> d(2);
  std::vector<std::atomic<int>> taken(k_values);
  std::atomic<bool> done{false};
  std::atomic<int> total{0};

  std::vector<std::thread> thieves;
  for (int t = 0; t < k_thieves; ++t) {
    thieves.emplace_back([&] {
      while (!done.load(std::memory_order_acquire) || d.size_hint() > 0) {
        auto r = d.steal();
        if (r.status == steal_status::success) {
          taken[static_cast<std::size_t>(r.value)].fetch_add(1, std::memory_order_relaxed);
          total.fetch_add(1, std::memory_order_relaxed);
        }
      }
    });
  }
  for (int i = 0; i < k_values; ++i) {
    d.push(i);
    if (i % 3 == 0) {
      if (auto v = d.pop()) {
        taken[static_cast<std::size_t>(*v)].fetch_add(1, std::memory_order_relaxed);
        total.fetch_add(1, std::memory_order_relaxed);
      }
    }
  }
  while (auto v = d.pop()) {
    taken[static_cast<std::size_t>(*v)].fetch_add(1, std::memory_order_relaxed);
    total.fetch_add(1, std::memory_order_relaxed);
  }
  done.store(true, std::memory_order_release);
  for (auto& t : thieves) t.join();
  EXPECT_EQ(total.load(), k_values);
  for (int i = 0; i < k_values; ++i) ASSERT_EQ(taken[static_cast<std::size_t>(i)].load(), 1) << i;
}

// Pointer payloads: what the owner wrote before push is visible to the thief (checked by TSan).
TEST(ChaseLevDeque, PushPublishesPayloadToThief) {
  struct payload {
    int value;
  };
  constexpr int k_items = 50'000;
  chase_lev_deque<payload*> d(2);
  std::atomic<int> received{0};
  std::thread thief([&] {
    long sum = 0;
    while (received.load(std::memory_order_relaxed) < k_items) {
      auto r = d.steal();
      if (r.status == steal_status::success) {
        sum += r.value->value;
        delete r.value;
        received.fetch_add(1, std::memory_order_relaxed);
      }
    }
    EXPECT_EQ(sum, static_cast<long>(k_items) * 7);
  });
  for (int i = 0; i < k_items; ++i) d.push(new payload{7});
  thief.join();
}

}  // namespace
