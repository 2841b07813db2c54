#include <cstdint>
#include <thread>

#include <gtest/gtest.h>

#include <offload/detail/thread_cache.hpp>

namespace {

using offload::detail::next_cache_uid;
using offload::detail::thread_cache;

struct tag_a;
struct tag_b;

TEST(ThreadCache, UidsAreNeverReused) {
  const std::uint64_t a = next_cache_uid();
  const std::uint64_t b = next_cache_uid();
  EXPECT_NE(a, 0u);
  EXPECT_NE(a, b);
}

TEST(ThreadCache, KeepsTheLastNOwnersAndReplacesTheOldest) {
  using cache = thread_cache<tag_a, int, 2>;
  const std::uint64_t u1 = next_cache_uid(), u2 = next_cache_uid(), u3 = next_cache_uid();
  EXPECT_EQ(cache::find(u1), nullptr);
  cache::put(u1, 10);
  cache::put(u2, 20);
  ASSERT_NE(cache::find(u1), nullptr);
  EXPECT_EQ(*cache::find(u1), 10);
  cache::put(u1, 11);  // an owner's entry is updated in place, not added twice
  EXPECT_EQ(*cache::find(u1), 11);
  EXPECT_EQ(*cache::find(u2), 20);
  cache::put(u3, 30);  // replaces the oldest slot (u1's)
  EXPECT_EQ(cache::find(u1), nullptr);
  EXPECT_EQ(*cache::find(u2), 20);
  EXPECT_EQ(*cache::find(u3), 30);
}

using cache_a = thread_cache<tag_a, int>;
using cache_b = thread_cache<tag_b, int>;

TEST(ThreadCache, TagsAndThreadsHaveTheirOwnEntries) {
  const std::uint64_t u = next_cache_uid();
  cache_a::put(u, 1);
  EXPECT_EQ(cache_b::find(u), nullptr);
  bool seen_elsewhere = true;
  std::thread other([&] {
    seen_elsewhere = cache_a::find(u) != nullptr;
  });
  other.join();
  EXPECT_FALSE(seen_elsewhere);
  ASSERT_NE(cache_a::find(u), nullptr);
}

}  // namespace
