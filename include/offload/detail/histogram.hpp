#pragma once

/// @file histogram.hpp
/// @brief A single-writer log-linear histogram of durations, read concurrently by snapshots.

#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>

namespace offload::detail {

/// Bucket layout shared by every duration histogram: bucket 0 holds [0, 256 ns); then two
/// buckets per power of two, [2^k, 1.5·2^k) and [1.5·2^k, 2^(k+1)), for k = 8 .. 35; the last
/// bucket holds everything from 2^36 ns (about 69 s) up.
struct duration_buckets {
  static constexpr unsigned k_min_log2 = 8;
  static constexpr unsigned k_max_log2 = 36;
  static constexpr std::size_t k_count = 1 + 2 * (k_max_log2 - k_min_log2) + 1;

  static constexpr std::size_t index_of(std::uint64_t ns) noexcept {
    if (ns < (std::uint64_t{1} << k_min_log2))
      return 0;
    const unsigned log2 = static_cast<unsigned>(std::bit_width(ns)) - 1;
    if (log2 >= k_max_log2)
      return k_count - 1;
    const unsigned half = static_cast<unsigned>((ns >> (log2 - 1)) & 1u);
    return 1 + 2 * (log2 - k_min_log2) + half;
  }

  /// Exclusive upper bound of bucket i in nanoseconds; infinity for the last bucket.
  static constexpr double upper_bound_ns(std::size_t i) noexcept {
    if (i == 0)
      return static_cast<double>(std::uint64_t{1} << k_min_log2);
    if (i >= k_count - 1)
      return std::numeric_limits<double>::infinity();
    const unsigned log2 = k_min_log2 + static_cast<unsigned>((i - 1) / 2);
    const double base = static_cast<double>(std::uint64_t{1} << log2);
    return (i - 1) % 2 == 0 ? base * 1.5 : base * 2.0;
  }
};

static_assert(duration_buckets::index_of(255) == 0);
static_assert(duration_buckets::index_of(256) == 1);
static_assert(duration_buckets::index_of(383) == 1);
static_assert(duration_buckets::index_of(384) == 2);
static_assert(duration_buckets::index_of(511) == 2);
static_assert(duration_buckets::index_of(512) == 3);
static_assert(duration_buckets::index_of(~std::uint64_t{0}) == duration_buckets::k_count - 1);
static_assert(duration_buckets::upper_bound_ns(1) == 384.0);
static_assert(duration_buckets::upper_bound_ns(2) == 512.0);

/// Counts and a sum, written by one thread with plain (relaxed) stores and read by any thread.
/// Readers see each bucket's count as some value it had; a snapshot of several buckets is not
/// atomic (the count is taken as the sum of the buckets read, so it is always consistent with
/// them).
class owned_histogram {
 public:
  /// Writer thread only.
  void record(std::uint64_t ns) noexcept {
    auto& b = m_buckets[duration_buckets::index_of(ns)];
    b.store(b.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    m_sum_ns.store(m_sum_ns.load(std::memory_order_relaxed) + ns, std::memory_order_relaxed);
  }

  /// Adds this histogram's buckets and sum into the given arrays. Any thread.
  void add_to(std::array<std::uint64_t, duration_buckets::k_count>& buckets,
              std::uint64_t& sum_ns) const noexcept {
    for (std::size_t i = 0; i < duration_buckets::k_count; ++i)
      buckets[i] += m_buckets[i].load(std::memory_order_relaxed);
    sum_ns += m_sum_ns.load(std::memory_order_relaxed);
  }

 private:
  std::array<std::atomic<std::uint64_t>, duration_buckets::k_count> m_buckets{};
  std::atomic<std::uint64_t> m_sum_ns{0};
};

}  // namespace offload::detail
