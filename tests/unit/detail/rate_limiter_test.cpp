#include <algorithm>
#include <chrono>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <offload/detail/policy/rate_limiter.hpp>

namespace {

using namespace std::chrono_literals;
using offload::clock;
using offload::detail::rate_limiter;

const clock::time_point t0 = clock::time_point{} + 1000h;

TEST(RateLimiter, ABurstStartsAtOnceAndTheNextTokenIsReservedAhead) {
  rate_limiter r;
  for (int i = 0; i < 3; ++i) EXPECT_EQ(r.take("k", 10, 3, t0), std::nullopt) << i;
  const auto due = r.take("k", 10, 3, t0);
  ASSERT_TRUE(due);
  EXPECT_EQ(*due, t0 + 100ms);
  const auto next = r.take("k", 10, 3, t0);  // queued behind the first reservation
  ASSERT_TRUE(next);
  EXPECT_EQ(*next, t0 + 200ms);
  EXPECT_EQ(r.take("k", 10, 3, t0 + 1s), std::nullopt);  // refilled meanwhile
}

TEST(RateLimiter, KeysHaveTheirOwnBucketsAndABucketKeepsItsSettings) {
  rate_limiter r;
  EXPECT_EQ(r.take("a", 1, 1, t0), std::nullopt);
  EXPECT_EQ(r.take("b", 1, 1, t0), std::nullopt);  // a's empty bucket is not b's
  // a exists: a larger burst asked now does not change it.
  const auto due = r.take("a", 1000, 50, t0);
  ASSERT_TRUE(due);
  EXPECT_EQ(*due, t0 + 1s);
}

// Starting each task when take() says (now, or at its reservation), no window w holds more than
// burst + per_second × w starts.
TEST(RateLimiter, NoWindowHoldsMoreThanBurstPlusRateTimesItsLength) {
  constexpr double k_rate = 20;
  constexpr double k_burst = 4;
  rate_limiter r;
  std::vector<clock::time_point> starts;
  clock::time_point now = t0;
  for (int i = 0; i < 400; ++i) {
    now += std::chrono::milliseconds(i % 7 == 0 ? 90 : 3);  // bursts and gaps
    const auto due = r.take("k", k_rate, k_burst, now);
    starts.push_back(due ? *due : now);
  }
  std::sort(starts.begin(), starts.end());
  for (std::size_t a = 0; a < starts.size(); ++a) {
    for (std::size_t b = a; b < starts.size(); ++b) {
      const double w = std::chrono::duration<double>(starts[b] - starts[a]).count();
      const double in_window = static_cast<double>(b - a + 1);
      ASSERT_LE(in_window, k_burst + k_rate * w + 1e-6) << "window [" << a << ", " << b << "]";
    }
  }
}

// One take per distinct name for as long as a process runs: buckets that refilled are dropped,
// so the table holds about the names used within one refill time, not every name ever seen.
TEST(RateLimiter, BucketsOfIdleKeysAreDropped) {
  rate_limiter r;
  clock::time_point now = t0;
  std::size_t most = 0;
  for (int i = 0; i < 100'000; ++i) {
    now += 1ms;  // a bucket of 10/s, burst 1, is full again 100 ms after its take
    (void)r.take("name-" + std::to_string(i), 10, 1, now);
    most = std::max(most, r.size());
  }
  EXPECT_LE(most, 256u);
}

TEST(RateLimiter, ConcurrentTakesGrantTheBurstOnceAndReserveEachTokenOnce) {
  rate_limiter r;
  constexpr int k_per_thread = 5000;
  std::vector<std::optional<clock::time_point>> got[2];
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < k_per_thread; ++i) got[t].push_back(r.take("k", 1000, 8, t0));
    });
  }
  for (auto& t : threads) t.join();
  int immediate = 0;
  std::set<clock::time_point> reserved;
  for (const auto& v : got) {
    for (const auto& due : v) {
      if (due) {
        reserved.insert(*due);
      } else {
        ++immediate;
      }
    }
  }
  EXPECT_EQ(immediate, 8);
  EXPECT_EQ(reserved.size(), std::size_t{2 * k_per_thread - 8});  // no two share a token
}

}  // namespace
