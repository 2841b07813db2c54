// The dead-letter store: records, bounds, the hook, requeue.
// Timing runs on a manual_clock (see policy_test_support.hpp).

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <ostream>
#include <random>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "unit/policy_test_support.hpp"
#include "unit/test_support.hpp"
#include <gtest/gtest.h>

#include <offload/offload.hpp>

namespace {

using namespace std::chrono_literals;
using namespace policy_test;

// The dead-letter store.

/// Submits a task that fails once (max_attempts 1, through the policy path: a key) and waits.
void fail_once(offload::executor& ex, const std::string& name) {
  auto f = ex.submit(task_options{.key = "key-" + name, .name = name}, [name]() -> int {
    throw std::runtime_error(name + " failed");
  });
  EXPECT_THROW((void)f.get(), std::runtime_error);
}

std::vector<std::string> names_of(const std::vector<offload::dead_letter>& dead) {
  std::vector<std::string> names;
  for (const auto& d : dead) names.push_back(d.name);
  return names;
}

TEST(DeadLetter, BoundedByCountOldestEvictedFirst) {
  auto c = make_clock();
  offload::executor ex{{.workers = 1, .dead_letters = {.max_count = 3}, .clock = c}};
  for (const char* name : {"t0", "t1", "t2", "t3", "t4"}) fail_once(ex, name);
  const auto dead = ex.dead_letters();
  EXPECT_EQ(names_of(dead), (std::vector<std::string>{"t2", "t3", "t4"}));
  EXPECT_EQ(dead[1].error, "t3 failed");
  EXPECT_LT(dead[0].id, dead[1].id);
  EXPECT_LT(dead[1].id, dead[2].id);
  EXPECT_EQ(ex.metrics().dead_letters, 3u);
}

TEST(DeadLetter, ZeroCountKeepsNoneButStillCallsTheHook) {
  auto c = make_clock();
  std::atomic<int> hooked{0};
  offload::executor ex{{.workers = 1,
                        .dead_letters = {.max_count = 0},
                        .on_dead_letter =
                            [&hooked](const offload::dead_letter&) {
                              hooked.fetch_add(1);
                            },
                        .clock = c}};
  fail_once(ex, "a");
  EXPECT_TRUE(ex.dead_letters().empty());
  EXPECT_EQ(hooked.load(), 1);
}

TEST(DeadLetter, BoundedByAge) {
  auto c = make_clock();
  offload::executor ex{
      {.workers = 1, .dead_letters = {.max_count = 100, .max_age = 10s}, .clock = c}};
  fail_once(ex, "old");
  c->advance(5s);
  fail_once(ex, "young");
  EXPECT_EQ(names_of(ex.dead_letters()), (std::vector<std::string>{"old", "young"}));
  c->advance(5s);  // "old" is exactly 10 s old: kept (evicted once older than max_age)
  EXPECT_EQ(names_of(ex.dead_letters()), (std::vector<std::string>{"old", "young"}));
  c->advance(1s);
  EXPECT_EQ(names_of(ex.dead_letters()), (std::vector<std::string>{"young"}));
  c->advance(5s);
  EXPECT_TRUE(ex.dead_letters().empty());
}

TEST(DeadLetter, HookReceivesEachRecord) {
  auto c = make_clock();
  recorder<offload::dead_letter> hooked;
  offload::executor ex{{.workers = 2,
                        .on_dead_letter =
                            [&hooked](const offload::dead_letter& d) {
                              hooked.add(d);
                            },
                        .clock = c}};
  auto f =
      ex.submit(task_options{.lane = lane::critical,
                             .retry = offload::retry_policy{.max_attempts = 2, .base_delay = 5ms},
                             .name = "hooked"},
                []() -> int {
                  throw card_declined("no funds");
                });
  offload_test::eventually([&] {
    return f.state() == task_state::retrying;
  });
  EXPECT_EQ(hooked.size(), 0u);  // not on a failure that is retried
  c->advance(5ms);
  EXPECT_THROW((void)f.get(), card_declined);
  ASSERT_EQ(hooked.size(), 1u);  // the policy path records before the future is resolved
  const auto d = hooked.values().front();
  EXPECT_EQ(d.name, "hooked");
  EXPECT_EQ(d.attempts, 2u);
  EXPECT_EQ(d.error, "no funds");
  EXPECT_EQ(d.lane, lane::critical);
  EXPECT_LE(d.first_failure, d.last_failure);
  EXPECT_EQ(d.last_failure - d.first_failure, 5ms);
  ASSERT_EQ(ex.dead_letters().size(), 1u);
  EXPECT_EQ(ex.dead_letters().front().id, d.id);
}

TEST(DeadLetter, RequeueRunsTheTaskAgainAndRemovesTheRecord) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  auto runs = std::make_shared<std::atomic<int>>(0);
  auto f = ex.submit(task_options{.lane = lane::high, .key = "job-9", .name = "requeue_me"},
                     [runs]() -> int {
                       if (runs->fetch_add(1) == 0)
                         throw std::runtime_error("first run fails");
                       return 1;
                     });
  EXPECT_THROW((void)f.get(), std::runtime_error);
  auto dead = ex.dead_letters();
  ASSERT_EQ(dead.size(), 1u);
  const offload::dead_letter record = dead[0];
  EXPECT_TRUE(record.requeueable());
  EXPECT_TRUE(ex.requeue(record));
  EXPECT_TRUE(ex.dead_letters().empty());  // removed at once
  offload_test::eventually([&] {
    return runs->load() == 2;
  });
  ex.wait_idle();
  EXPECT_TRUE(ex.dead_letters().empty());  // the second run succeeded
  EXPECT_FALSE(ex.requeue(record));        // gone already
  offload::dead_letter unknown;
  unknown.id = 987654;
  EXPECT_FALSE(ex.requeue(unknown));
  EXPECT_EQ(ex.metrics().of(lane::high).completed_of(offload::task_outcome::succeeded), 1u);
}

TEST(DeadLetter, RequeuedTaskKeepsItsRetryPolicyAndResetsAttempts) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  recorder<unsigned> attempts;
  auto fail_always = [&attempts]() -> int {
    attempts.add(offload::this_task::attempt());
    throw std::runtime_error("still failing");
  };
  auto f = ex.submit(
      task_options{
          .retry = offload::retry_policy{.max_attempts = 2, .base_delay = 0ms, .max_delay = 0ms},
          .name = "twice"},
      fail_always);
  EXPECT_THROW((void)f.get(), std::runtime_error);
  ASSERT_EQ(ex.dead_letters().size(), 1u);
  EXPECT_TRUE(ex.requeue(ex.dead_letters().front()));
  offload_test::eventually([&] {
    return ex.dead_letters().size() == 1 && attempts.size() == 4;
  });
  ex.wait_idle();
  EXPECT_EQ(attempts.values(), (std::vector<unsigned>{1, 2, 1, 2}));
  EXPECT_EQ(ex.dead_letters().front().attempts, 2u);
  EXPECT_EQ(ex.dead_letters().front().name, "twice");
}

TEST(DeadLetter, MoveOnlyTaskIsNotRequeueable) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  auto f = ex.submit(task_options{.key = "move-only"}, [p = std::make_unique<int>(3)]() -> int {
    throw std::runtime_error("fails " + std::to_string(*p));
  });
  EXPECT_THROW((void)f.get(), std::runtime_error);
  const auto dead = ex.dead_letters();
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_FALSE(dead[0].requeueable());
  EXPECT_FALSE(ex.requeue(dead[0]));
  EXPECT_EQ(ex.dead_letters().size(), 1u);  // the record stays
}

}  // namespace
