// Retries: retry_delay() (the backoff formula, the cap, jitter) and retries through the executor's
// timer. Timing runs on a manual_clock (see policy_test_support.hpp).

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

// retry_delay(): the backoff formula, the cap, then jitter.

offload::clock::duration ms(std::int64_t n) {
  return std::chrono::milliseconds(n);
}

TEST(RetryDelay, ExponentialDoublesFromTheBaseUpToTheCap) {
  const retry_policy p{.max_attempts = 20,
                       .backoff = backoff::exponential,
                       .base_delay = 20ms,
                       .max_delay = 1s,
                       .jitter = jitter::none};
  const std::int64_t expected[] = {20, 40, 80, 160, 320, 640, 1000, 1000, 1000};
  for (unsigned k = 1; k <= std::size(expected); ++k)
    EXPECT_EQ(offload::retry_delay(p, k, 0.5), ms(expected[k - 1])) << "retry " << k;
  // Far past the cap, and past the exponent's range: still the cap, never an overflow.
  EXPECT_EQ(offload::retry_delay(p, 64, 0.5), ms(1000));
  EXPECT_EQ(offload::retry_delay(p, 1'000'000, 0.5), ms(1000));
}

TEST(RetryDelay, ExponentialWithoutReachingTheCap) {
  const retry_policy p{.max_attempts = 5, .base_delay = 20ms, .max_delay = 60s};
  EXPECT_EQ(p.backoff, backoff::exponential);  // the default
  const std::int64_t expected[] = {20, 40, 80, 160, 320, 640, 1280, 2560, 5120, 10240};
  for (unsigned k = 1; k <= std::size(expected); ++k)
    EXPECT_EQ(offload::retry_delay(p, k, 0.0), ms(expected[k - 1])) << "retry " << k;
}

TEST(RetryDelay, FixedIsAlwaysTheBase) {
  const retry_policy p{.max_attempts = 10, .backoff = backoff::fixed, .base_delay = 20ms};
  for (unsigned k : {1u, 2u, 3u, 10u, 1000u})
    EXPECT_EQ(offload::retry_delay(p, k, 0.3), ms(20)) << "retry " << k;
}

TEST(RetryDelay, LinearGrowsByTheBaseUpToTheCap) {
  const retry_policy p{
      .max_attempts = 10, .backoff = backoff::linear, .base_delay = 20ms, .max_delay = 70ms};
  const std::int64_t expected[] = {20, 40, 60, 70, 70};
  for (unsigned k = 1; k <= std::size(expected); ++k)
    EXPECT_EQ(offload::retry_delay(p, k, 0.9), ms(expected[k - 1])) << "retry " << k;
}

TEST(RetryDelay, ZeroBaseGivesZero) {
  const retry_policy p{.max_attempts = 3, .base_delay = 0ms, .max_delay = 0ms};
  EXPECT_NO_THROW(p.validate());
  EXPECT_EQ(offload::retry_delay(p, 1, 1.0), offload::clock::duration::zero());
  EXPECT_EQ(offload::retry_delay(p, 7, 1.0), offload::clock::duration::zero());
}

TEST(RetryDelay, JitterExtremes) {
  retry_policy p{.max_attempts = 10, .base_delay = 20ms, .max_delay = 1s};
  p.jitter = jitter::full;
  EXPECT_EQ(offload::retry_delay(p, 3, 0.0), ms(0));
  EXPECT_EQ(offload::retry_delay(p, 3, 1.0), ms(80));
  EXPECT_EQ(offload::retry_delay(p, 3, 0.5), ms(40));
  p.jitter = jitter::equal;
  EXPECT_EQ(offload::retry_delay(p, 3, 0.0), ms(40));
  EXPECT_EQ(offload::retry_delay(p, 3, 1.0), ms(80));
  EXPECT_EQ(offload::retry_delay(p, 3, 0.5), ms(60));
  // Out-of-range uniforms are clamped to [0, 1].
  EXPECT_EQ(offload::retry_delay(p, 3, -1.0), ms(40));
  EXPECT_EQ(offload::retry_delay(p, 3, 2.0), ms(80));
  p.jitter = jitter::full;
  EXPECT_EQ(offload::retry_delay(p, 3, -1.0), ms(0));
  EXPECT_EQ(offload::retry_delay(p, 3, 2.0), ms(80));
}

TEST(RetryDelay, JitterIsAppliedAfterTheCap) {
  // Uncapped, retry 10 would wait 20 ms × 512 = 10.24 s; the cap (1 s) comes first, then jitter.
  retry_policy p{.max_attempts = 20, .base_delay = 20ms, .max_delay = 1s, .jitter = jitter::full};
  EXPECT_EQ(offload::retry_delay(p, 10, 1.0), ms(1000));
  EXPECT_EQ(offload::retry_delay(p, 10, 0.25), ms(250));
  p.jitter = jitter::equal;
  EXPECT_EQ(offload::retry_delay(p, 10, 0.0), ms(500));
  EXPECT_EQ(offload::retry_delay(p, 10, 1.0), ms(1000));
}

/// Draws 10^5 jittered delays of retry `k` with a local, seeded RNG; checks they stay in
/// [lo, hi], cover the range, and average near its middle.
void check_jitter_samples(const retry_policy& p,
                          unsigned k,
                          offload::clock::duration lo,
                          offload::clock::duration hi) {
  std::mt19937_64 rng(20261123);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  constexpr int n = 100'000;
  auto min_seen = offload::clock::duration::max();
  auto max_seen = offload::clock::duration::min();
  double sum = 0;
  for (int i = 0; i < n; ++i) {
    const auto d = offload::retry_delay(p, k, uniform(rng));
    ASSERT_GE(d, lo) << "sample " << i;
    ASSERT_LE(d, hi) << "sample " << i;
    min_seen = std::min(min_seen, d);
    max_seen = std::max(max_seen, d);
    sum += static_cast<double>(d.count());
  }
  const double width = static_cast<double>((hi - lo).count());
  EXPECT_LT(static_cast<double>((min_seen - lo).count()), width * 0.001);
  EXPECT_LT(static_cast<double>((hi - max_seen).count()), width * 0.001);
  const double mean = sum / n;
  const double middle = static_cast<double>(lo.count()) + width / 2;
  EXPECT_NEAR(mean, middle, width * 0.01);
}

TEST(RetryDelay, FullJitterStaysWithinZeroAndTheDelay) {
  const retry_policy p{
      .max_attempts = 10, .base_delay = 20ms, .max_delay = 1s, .jitter = jitter::full};
  check_jitter_samples(p, 3, ms(0), ms(80));    // d = 80 ms
  check_jitter_samples(p, 9, ms(0), ms(1000));  // capped: d = 1 s
}

TEST(RetryDelay, EqualJitterStaysWithinHalfAndTheDelay) {
  const retry_policy p{
      .max_attempts = 10, .base_delay = 20ms, .max_delay = 1s, .jitter = jitter::equal};
  check_jitter_samples(p, 3, ms(40), ms(80));
  check_jitter_samples(p, 9, ms(500), ms(1000));
}

// ---------------------------------------------------------------------------------------------
// Retries through the executor.

TEST(Retry, OneAttemptRunsOnceAndDeadLettersWithTheTaskException) {
  auto c = make_clock();
  offload::executor ex{with_clock(2, c)};
  std::atomic<int> runs{0};
  auto f = ex.submit(task_options{.lane = lane::high,
                                  .retry = offload::retry_policy{.max_attempts = 1},
                                  .key = "order:17",
                                  .name = "charge_card"},
                     [&runs]() -> int {
                       runs.fetch_add(1);
                       throw card_declined("card declined", 4711);
                     });
  try {
    (void)f.get();
    ADD_FAILURE() << "get() returned";
  } catch (const card_declined& e) {  // the task's own exception, not wrapped
    EXPECT_STREQ(e.what(), "card declined");
    EXPECT_EQ(e.serial, 4711);
  }
  ex.wait_idle();
  EXPECT_EQ(runs.load(), 1);
  const auto dead = ex.dead_letters();
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].attempts, 1u);
  EXPECT_EQ(dead[0].name, "charge_card");
  EXPECT_EQ(dead[0].key, "order:17");
  EXPECT_EQ(dead[0].error, "card declined");
  EXPECT_NE(dead[0].exception_type.find("card_declined"), std::string::npos)
      << dead[0].exception_type;
  EXPECT_EQ(dead[0].lane, lane::high);
  EXPECT_EQ(dead[0].first_failure, dead[0].last_failure);
  EXPECT_EQ(dead[0].last_failure, c->now());
  EXPECT_EQ(ex.metrics().of(lane::high).retries, 0u);
  EXPECT_EQ(ex.metrics().dead_letters, 1u);
}

TEST(Retry, OneAttemptWithoutPolicyFieldsIsDeadLetteredToo) {
  // No key, delay, deadline or retry: the plain path, which records the dead letter itself.
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  auto f = ex.submit(task_options{.lane = lane::low, .name = "plain"}, []() -> int {
    throw card_declined("declined again");
  });
  EXPECT_THROW((void)f.get(), card_declined);
  offload_test::eventually([&] {
    return ex.dead_letters().size() == 1;
  });
  const auto d = ex.dead_letters().front();
  EXPECT_EQ(d.attempts, 1u);
  EXPECT_EQ(d.name, "plain");
  EXPECT_EQ(d.key, "");
  EXPECT_EQ(d.error, "declined again");
  EXPECT_NE(d.exception_type.find("card_declined"), std::string::npos) << d.exception_type;
  EXPECT_EQ(d.lane, lane::low);
  EXPECT_FALSE(d.requeueable());  // the plain path keeps no callable
  EXPECT_FALSE(ex.requeue(d));
}

TEST(Retry, FailsTwiceThenSucceedsOnTheThirdAttempt) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  recorder<unsigned> attempts;
  auto f = ex.submit(
      task_options{
          .retry = offload::retry_policy{.max_attempts = 3, .base_delay = 20ms, .max_delay = 1s},
          .name = "flaky"},
      [&attempts] {
        const unsigned a = offload::this_task::attempt();
        attempts.add(a);
        if (a < 3)
          throw std::runtime_error("attempt " + std::to_string(a) + " failed");
        return 42;
      });
  offload_test::eventually([&] {
    return attempts.size() == 1 && f.state() == task_state::retrying;
  });
  offload_test::eventually([&] {  // in the timer (the state changes just before)
    return ex.metrics().of(lane::normal).scheduled == 1;
  });
  c->advance(20ms);  // exponential: retry 1 waits 20 ms
  offload_test::eventually([&] {
    return attempts.size() == 2 && f.state() == task_state::retrying;
  });
  c->advance(40ms);  // retry 2 waits 40 ms
  f.wait();
  EXPECT_EQ(f.state(), task_state::succeeded);
  EXPECT_EQ(f.get(), 42);
  EXPECT_EQ(attempts.values(), (std::vector<unsigned>{1, 2, 3}));
  offload_test::eventually([&] {
    return ex.metrics().of(lane::normal).retries == 2;
  });
  ex.wait_idle();
  EXPECT_TRUE(ex.dead_letters().empty());
  const auto m = ex.metrics().of(lane::normal);
  EXPECT_EQ(m.completed_of(offload::task_outcome::succeeded), 1u);
  EXPECT_EQ(m.completed_of(offload::task_outcome::failed), 0u);
  EXPECT_EQ(m.scheduled, 0u);
}

TEST(Retry, AttemptIsOneOutsideATaskAndForPlainTasks) {
  offload::executor ex{{.workers = 1}};
  EXPECT_EQ(offload::this_task::attempt(), 1u);
  EXPECT_EQ(ex.submit([] {
                return offload::this_task::attempt();
              }).get(),
            1u);
}

TEST(Retry, TheWaitHoldsNoWorker) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  std::atomic<int> runs{0};
  auto retried = ex.submit(task_options{.retry = offload::retry_policy{.max_attempts = 2,
                                                                       .backoff = backoff::fixed,
                                                                       .base_delay = 1h,
                                                                       .max_delay = 1h}},
                           [&runs] {
                             if (runs.fetch_add(1) == 0)
                               throw std::runtime_error("first attempt fails");
                             return 1;
                           });
  offload_test::eventually([&] {
    return retried.state() == task_state::retrying;
  });
  // The only worker is free while the retry waits: another task runs to completion.
  auto other = ex.submit([] {
    return 2;
  });
  EXPECT_EQ(other.get(), 2);
  EXPECT_EQ(retried.state(), task_state::retrying);
  EXPECT_EQ(runs.load(), 1);
  c->advance(1h);
  EXPECT_EQ(retried.get(), 1);
  EXPECT_EQ(runs.load(), 2);
}

TEST(Retry, LastAttemptFailsWithTheLastException) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  std::atomic<int> runs{0};
  auto f = ex.submit(
      task_options{
          .retry = offload::retry_policy{.max_attempts = 3, .base_delay = 0ms, .max_delay = 0ms},
          .name = "always_fails"},
      [&runs]() -> int {
        const int n = runs.fetch_add(1) + 1;
        throw card_declined("failure " + std::to_string(n), n);
      });
  f.wait();
  EXPECT_EQ(f.state(), task_state::failed);
  try {
    (void)f.get();
    ADD_FAILURE() << "get() returned";
  } catch (const card_declined& e) {
    EXPECT_EQ(e.serial, 3);
    EXPECT_STREQ(e.what(), "failure 3");
  }
  ex.wait_idle();
  EXPECT_EQ(runs.load(), 3);
  const auto dead = ex.dead_letters();
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].attempts, 3u);
  EXPECT_EQ(dead[0].error, "failure 3");
  EXPECT_EQ(ex.metrics().of(lane::normal).retries, 2u);
}

bool retry_unless_invalid_argument(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::invalid_argument&) {
    return false;
  } catch (...) {
    return true;
  }
}

TEST(Retry, RetryIfRefusingDeadLettersAtOnce) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  std::atomic<int> runs{0};
  auto f = ex.submit(
      task_options{.retry = offload::retry_policy{.max_attempts = 5,
                                                  .retry_if = retry_unless_invalid_argument},
                   .name = "parse"},
      [&runs]() -> int {
        runs.fetch_add(1);
        throw std::invalid_argument("malformed input");
      });
  // No clock advance: the refusal is final at once.
  f.wait();
  EXPECT_EQ(f.state(), task_state::failed);
  EXPECT_THROW((void)f.get(), std::invalid_argument);
  ex.wait_idle();
  EXPECT_EQ(runs.load(), 1);
  const auto dead = ex.dead_letters();
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].attempts, 1u);
  EXPECT_EQ(dead[0].name, "parse");
  EXPECT_EQ(dead[0].error, "malformed input");
  EXPECT_EQ(ex.metrics().of(lane::normal).retries, 0u);
  EXPECT_EQ(ex.metrics().of(lane::normal).scheduled, 0u);
}

TEST(Retry, RetryIfAcceptingRetries) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  std::atomic<int> runs{0};
  auto f = ex.submit(
      task_options{.retry = offload::retry_policy{.max_attempts = 5,
                                                  .base_delay = 10ms,
                                                  .retry_if = retry_unless_invalid_argument}},
      [&runs] {
        if (runs.fetch_add(1) == 0)
          throw std::runtime_error("transient");
        return 5;
      });
  offload_test::eventually([&] {
    return f.state() == task_state::retrying;
  });
  c->advance(10ms);
  EXPECT_EQ(f.get(), 5);
  EXPECT_EQ(runs.load(), 2);
}

TEST(Retry, RetryIfThrowingMeansNoRetry) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  std::atomic<int> runs{0};
  auto f = ex.submit(
      task_options{.retry =
                       offload::retry_policy{.max_attempts = 5,
                                             .retry_if = [](const std::exception_ptr&) -> bool {
                                               throw std::logic_error("predicate broke");
                                             }}},
      [&runs]() -> int {
        runs.fetch_add(1);
        throw std::runtime_error("task failed");
      });
  EXPECT_THROW((void)f.get(), std::runtime_error);
  ex.wait_idle();
  EXPECT_EQ(runs.load(), 1);
}

TEST(Retry, RetryAfterSchedulesAfterTheGivenDelay) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  std::atomic<int> runs{0};
  // The policy's own backoff (1 h) would be far longer: retry_after overrides it.
  auto f = ex.submit(task_options{.retry = offload::retry_policy{.max_attempts = 2,
                                                                 .backoff = backoff::fixed,
                                                                 .base_delay = 1h,
                                                                 .max_delay = 1h}},
                     [&runs] {
                       runs.fetch_add(1);
                       if (offload::this_task::attempt() == 1)
                         offload::this_task::retry_after(50ms);
                       return offload::this_task::attempt();
                     });
  offload_test::eventually([&] {
    return f.state() == task_state::retrying;
  });
  advance_and_settle(ex, *c, 49ms);  // the timer has seen t0 + 49 ms: not due yet
  EXPECT_EQ(runs.load(), 1);
  EXPECT_EQ(f.state(), task_state::retrying);
  c->advance(1ms);  // t0 + 50 ms
  EXPECT_EQ(f.get(), 2u);
  EXPECT_EQ(runs.load(), 2);
  EXPECT_EQ(ex.metrics().of(lane::normal).retries, 1u);
}

TEST(Retry, RetryAfterPastTheLastAttemptFailsWithTheRequest) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  auto f = ex.submit(task_options{.retry = offload::retry_policy{.max_attempts = 2}}, []() -> int {
    offload::this_task::retry_after(0ms);
  });
  EXPECT_THROW((void)f.get(), offload::retry_request);
  const auto dead = ex.dead_letters();
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].attempts, 2u);
}

}  // namespace
