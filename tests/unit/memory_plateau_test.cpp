// Memory stays bounded in a process that runs for months: rounds of the same work (distinct keys
// and names, failing tasks, a burst of futures, cancelled delayed tasks) must plateau, not grow
// with the number of rounds. Measured as bytes in use by malloc (every thread allocates from one
// arena here, so that mallinfo2() sees them all) plus what malloc mapped directly.
// Plain builds only: the sanitizers replace malloc.
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <malloc.h>

#include "offload/config.hpp"
#include "offload/offload.hpp"

using namespace std::chrono_literals;
using offload::task_options;

namespace {

// Before any thread starts: one arena, so that mallinfo2() counts every thread's allocations.
const bool k_one_arena = mallopt(M_ARENA_MAX, 1) == 1;

std::size_t bytes_in_use() {
  const struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

constexpr bool k_sanitized = OFFLOAD_ASAN || OFFLOAD_TSAN;

/// One round: every kind of work that once kept memory per task.
void one_round(offload::executor& ex, int round) {
  const std::string tag = std::to_string(round);
  {  // distinct keys, each with its own future
    std::vector<offload::future<int>> keyed;
    keyed.reserve(20'000);
    for (int i = 0; i < 20'000; ++i) {
      keyed.push_back(ex.submit(task_options{.key = "user-" + tag + "-" + std::to_string(i)}, [i] {
        return i;
      }));
    }
    for (auto& f : keyed) (void)f.get();
  }
  for (int i = 0; i < 20'000; ++i)  // distinct names (a Celery user's job ids)
    ex.post(task_options{.name = "job-" + tag + "-" + std::to_string(i)}, [] {});
  for (int i = 0; i < 5'000; ++i) {  // failures: dead letters, bounded by the store's limits
    ex.post(task_options{.retry = offload::retry_policy{.max_attempts = 2, .base_delay = 0ms},
                         .name = "fails-" + std::to_string(i)},
            [pad = std::string(300, 'x')] {
              throw std::runtime_error("boom " + pad);
            });
  }
  {  // a burst of futures
    std::vector<offload::future<int>> burst;
    burst.reserve(100'000);
    for (int i = 0; i < 100'000; ++i)
      burst.push_back(ex.submit([i] {
        return i;
      }));
    for (auto& f : burst) (void)f.get();
  }
  {  // delayed tasks cancelled long before their due time
    std::vector<offload::future<int>> delayed;
    delayed.reserve(20'000);
    for (int i = 0; i < 20'000; ++i) {
      delayed.push_back(ex.submit(task_options{.delay = 1h}, [pad = std::vector<char>(256)] {
        return int(pad.size());
      }));
    }
    for (auto& f : delayed) EXPECT_TRUE(f.cancel());
  }
  ex.wait_idle();
}

}  // namespace

TEST(MemoryPlateau, RepeatedRoundsOfTheSameWorkDoNotGrow) {
  if (k_sanitized)
    GTEST_SKIP() << "the sanitizers replace malloc";
  ASSERT_TRUE(k_one_arena);
  offload::executor ex{{.workers = 2}};
  std::vector<std::size_t> after;
  for (int round = 0; round < 7; ++round) {
    one_round(ex, round);
    after.push_back(bytes_in_use());
    std::printf("round %d: %zu KiB in use, %zu dead letters\n",
                round,
                after.back() / 1024,
                ex.dead_letters().size());
  }
  // Rounds 0 and 1 fill the pools, caches and the dead-letter store to their working size; from
  // then on each round must leave memory where it found it (within allocator noise).
  const std::size_t settled = after[2];
  const std::size_t slack = std::size_t{2} << 20;
  for (std::size_t r = 3; r < after.size(); ++r) {
    EXPECT_LE(after[r], settled + slack)
        << "round " << r << " grew memory by " << (after[r] - settled) / 1024 << " KiB";
  }
  EXPECT_LE(ex.dead_letters().size(), 1000u);
}
