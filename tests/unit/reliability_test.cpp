// Reliability policies (issue 4): retry_delay() vectors, retries through the timer, this_task,
// dead letters, delays, deadlines, cancellation, de-duplication keys, bad input, shutdown with
// timed work, and the per-lane counters. Timing runs on a manual_clock: tests advance it and
// wait for the effects with offload_test::eventually(), never on wall time.
//
// Suites: RetryDelay, Retry, DeadLetter, Delay, Deadline, Cancel, Key, ReliabilityInput,
// ReliabilityShutdown, ReliabilityCounters (ctest -R "Reliability|Retry|DeadLetter|...").

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

#include "unit/test_support.hpp"
#include <gtest/gtest.h>

#include <offload/offload.hpp>

namespace offload {
// Readable task states in failure messages.
inline void PrintTo(task_state s, std::ostream* os) {
  *os << to_string(s);
}
}  // namespace offload

namespace {

using namespace std::chrono_literals;
using offload::backoff;
using offload::jitter;
using offload::lane;
using offload::retry_policy;
using offload::task_options;
using offload::task_state;
using clock_ptr = std::shared_ptr<offload::manual_clock>;

clock_ptr make_clock() {
  return std::make_shared<offload::manual_clock>();
}

offload::executor_options with_clock(unsigned workers, const clock_ptr& c) {
  return {.workers = workers, .clock = c};
}

/// A failure type of the tests' own, to check that futures and dead letters keep it.
class card_declined : public std::runtime_error {
 public:
  explicit card_declined(const std::string& what, int id = 0)
      : std::runtime_error(what), serial(id) {}
  int serial;
};

/// Records values from several threads.
template <class T>
class recorder {
 public:
  void add(T v) {
    std::lock_guard lock(m_mutex);
    m_values.push_back(std::move(v));
  }
  std::vector<T> values() const {
    std::lock_guard lock(m_mutex);
    return m_values;
  }
  std::size_t size() const {
    std::lock_guard lock(m_mutex);
    return m_values.size();
  }

 private:
  mutable std::mutex m_mutex;
  std::vector<T> m_values;
};

/// Occupies every worker of `ex` with a task waiting on `g`; returns once all of them run.
void hold_workers(offload::executor& ex, offload_test::gate& g) {
  std::atomic<unsigned> started{0};
  for (unsigned i = 0; i < ex.worker_count(); ++i) {
    ex.post([&g, &started] {
      started.fetch_add(1);
      g.wait();
    });
  }
  offload_test::eventually([&] {
    return started.load() == ex.worker_count();
  });
}

/// Advances the clock by `d` and returns once the executor's timer has handled the new time: a
/// probe task delayed by exactly `d` (due no later than anything it is meant to hold back) has
/// run. With one worker and one lane, whatever the timer released before the probe ran before it.
/// The workers must be free to run the probe.
void advance_and_settle(offload::executor& ex,
                        offload::manual_clock& c,
                        offload::clock::duration d) {
  std::atomic<bool> probe{false};
  ex.post(task_options{.delay = d}, [&probe] {
    probe.store(true);
  });
  c.advance(d);
  offload_test::eventually([&] {
    return probe.load();
  });
}

using offload_test::counters_reconcile;

// ---------------------------------------------------------------------------------------------
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

// ---------------------------------------------------------------------------------------------
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

// ---------------------------------------------------------------------------------------------
// Delays.

TEST(Delay, StartsOnlyOnceTheClockHasAdvancedByTheDelay) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  std::atomic<bool> ran{false};
  auto f = ex.submit(task_options{.delay = 30ms}, [&ran] {
    ran.store(true);
    return 30;
  });
  EXPECT_EQ(f.state(), task_state::scheduled);
  advance_and_settle(ex, *c, 29ms);  // the timer has seen t0 + 29 ms
  EXPECT_FALSE(ran.load());
  EXPECT_EQ(f.state(), task_state::scheduled);
  EXPECT_FALSE(f.is_ready());
  EXPECT_EQ(ex.metrics().of(lane::normal).scheduled, 1u);
  c->advance(1ms);
  f.wait();
  EXPECT_EQ(f.state(), task_state::succeeded);
  EXPECT_EQ(f.get(), 30);
  EXPECT_TRUE(ran.load());
  EXPECT_EQ(ex.metrics().of(lane::normal).scheduled, 0u);
}

TEST(Delay, PostedDelayedTaskRunsAfterTheDelay) {
  auto c = make_clock();
  offload::executor ex{with_clock(2, c)};
  std::atomic<bool> ran{false};
  ex.post(task_options{.lane = lane::low, .delay = 1s}, [&ran] {
    ran.store(true);
  });
  EXPECT_EQ(ex.metrics().of(lane::low).scheduled, 1u);
  c->advance(1s);
  offload_test::eventually([&] {
    return ran.load();
  });
}

TEST(Delay, WaitIdleWaitsForDelayedTasks) {
  auto c = make_clock();
  offload::executor ex{with_clock(2, c)};
  std::atomic<bool> ran{false};
  std::atomic<bool> waiting{false};
  std::atomic<bool> advanced{false};
  ex.post(task_options{.delay = 30ms}, [&ran] {
    ran.store(true);
  });
  std::thread advancer([&] {
    offload_test::eventually([&] {
      return waiting.load();
    });
    advanced.store(true);
    c->advance(30ms);
  });
  waiting.store(true);
  ex.wait_idle();  // returns only once the delayed task ran, so only after the advance
  EXPECT_TRUE(advanced.load());
  EXPECT_TRUE(ran.load());
  advancer.join();
}

TEST(Delay, EqualDueTimesStartInSubmissionOrder) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  recorder<int> order;
  for (int i = 0; i < 20; ++i) {
    ex.post(task_options{.delay = 10ms}, [&order, i] {
      order.add(i);
    });
  }
  c->advance(10ms);
  ex.wait_idle();
  std::vector<int> expected(20);
  for (int i = 0; i < 20; ++i) expected[static_cast<std::size_t>(i)] = i;
  EXPECT_EQ(order.values(), expected);
}

// ---------------------------------------------------------------------------------------------
// Deadlines.

TEST(Deadline, ExpiresAtTheDeadlineWhileTheWorkerIsBusy) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  offload_test::gate g;
  hold_workers(ex, g);
  std::atomic<bool> ran{false};
  auto f = ex.submit(task_options{.deadline = c->now() + 10ms}, [&ran] {
    ran.store(true);
    return 1;
  });
  EXPECT_EQ(f.state(), task_state::queued);
  c->advance(10ms);
  // Resolved by the timer at the deadline, not when the (still blocked) worker reaches it.
  offload_test::eventually([&] {
    return f.is_ready();
  });
  EXPECT_EQ(f.state(), task_state::expired);
  g.open();
  ex.wait_idle();
  EXPECT_FALSE(ran.load());
  EXPECT_EQ(f.state(), task_state::expired);  // unchanged when the worker reached the task
  EXPECT_THROW((void)f.get(), offload::expired);
  EXPECT_EQ(ex.metrics().of(lane::normal).completed_of(offload::task_outcome::expired), 1u);
  EXPECT_TRUE(counters_reconcile(ex.metrics()));
}

TEST(Deadline, AlreadyPastAtSubmissionNeverRuns) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  std::atomic<bool> ran{false};
  auto f = ex.submit(task_options{.deadline = c->now()}, [&ran] {
    ran.store(true);
    return 1;
  });
  f.wait();
  ex.wait_idle();
  EXPECT_FALSE(ran.load());
  EXPECT_EQ(f.state(), task_state::expired);
  EXPECT_THROW((void)f.get(), offload::expired);
}

TEST(Deadline, TaskStartedInTimeRuns) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  auto f = ex.submit(task_options{.deadline = c->now() + 1h}, [] {
    return 9;
  });
  f.wait();
  c->advance(2h);  // the expiry timer fires later and changes nothing
  advance_and_settle(ex, *c, 1ms);
  EXPECT_EQ(f.state(), task_state::succeeded);
  EXPECT_EQ(f.get(), 9);
}

TEST(Deadline, DelayedPastItsDeadlineNeverRuns) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  std::atomic<bool> ran{false};
  auto f = ex.submit(task_options{.delay = 20ms, .deadline = c->now() + 10ms}, [&ran] {
    ran.store(true);
    return 1;
  });
  c->advance(10ms);
  offload_test::eventually([&] {
    return f.is_ready();
  });
  EXPECT_EQ(f.state(), task_state::expired);
  c->advance(10ms);
  ex.wait_idle();
  EXPECT_FALSE(ran.load());
  EXPECT_THROW((void)f.get(), offload::expired);
}

TEST(Deadline, RetryNotStartedByTheDeadlineNeverRuns) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  std::atomic<int> runs{0};
  auto f = ex.submit(task_options{.retry = offload::retry_policy{.max_attempts = 3,
                                                                 .backoff = backoff::fixed,
                                                                 .base_delay = 20ms,
                                                                 .max_delay = 20ms},
                                  .deadline = c->now() + 10ms},
                     [&runs]() -> int {
                       runs.fetch_add(1);
                       throw std::runtime_error("fails");
                     });
  offload_test::eventually([&] {
    return f.state() == task_state::retrying;
  });
  c->advance(10ms);
  offload_test::eventually([&] {
    return f.is_ready();
  });
  EXPECT_EQ(f.state(), task_state::expired);
  c->advance(10ms);  // the retry comes due: skipped
  ex.wait_idle();
  EXPECT_EQ(runs.load(), 1);
  EXPECT_THROW((void)f.get(), offload::expired);
  EXPECT_TRUE(counters_reconcile(ex.metrics()));
}

// ---------------------------------------------------------------------------------------------
// Cancellation.

TEST(Cancel, QueuedTaskNeverRuns) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  offload_test::gate g;
  hold_workers(ex, g);
  std::atomic<int> ran{0};
  auto plain = ex.submit([&ran] {
    ran.fetch_add(1);
    return 1;
  });
  auto with_policy =
      ex.submit(task_options{.retry = offload::retry_policy{.max_attempts = 3}}, [&ran] {
        ran.fetch_add(1);
        return 2;
      });
  EXPECT_TRUE(plain.cancel());
  EXPECT_TRUE(with_policy.cancel());
  EXPECT_EQ(plain.state(), task_state::cancelled);
  EXPECT_EQ(with_policy.state(), task_state::cancelled);
  EXPECT_FALSE(plain.cancel());  // once only
  g.open();
  ex.wait_idle();
  EXPECT_EQ(ran.load(), 0);
  EXPECT_EQ(plain.state(), task_state::cancelled);  // terminal: unchanged by the worker's visit
  EXPECT_EQ(with_policy.state(), task_state::cancelled);
  EXPECT_THROW((void)plain.get(), offload::cancelled);
  EXPECT_THROW((void)with_policy.get(), offload::cancelled);
  EXPECT_TRUE(counters_reconcile(ex.metrics()));
}

TEST(Cancel, DelayedTaskNeverRuns) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  std::atomic<bool> ran{false};
  auto f = ex.submit(task_options{.delay = 1s}, [&ran] {
    ran.store(true);
    return 1;
  });
  EXPECT_EQ(f.state(), task_state::scheduled);
  EXPECT_TRUE(f.cancel());
  EXPECT_EQ(f.state(), task_state::cancelled);
  EXPECT_TRUE(f.is_ready());
  c->advance(1s);
  ex.wait_idle();
  EXPECT_FALSE(ran.load());
  EXPECT_EQ(f.state(), task_state::cancelled);
  EXPECT_THROW((void)f.get(), offload::cancelled);
  EXPECT_TRUE(counters_reconcile(ex.metrics()));
}

TEST(Cancel, RetryWaitingTaskNeverRunsAgain) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  std::atomic<int> runs{0};
  auto f = ex.submit(
      task_options{.retry = offload::retry_policy{.max_attempts = 5, .base_delay = 100ms}},
      [&runs] {
        runs.fetch_add(1);
        throw std::runtime_error("fails");
        return 0;
      });
  offload_test::eventually([&] {
    return f.state() == task_state::retrying;
  });
  EXPECT_TRUE(f.cancel());
  EXPECT_EQ(f.state(), task_state::cancelled);
  EXPECT_FALSE(f.cancel());
  c->advance(1h);
  ex.wait_idle();
  EXPECT_EQ(runs.load(), 1);
  EXPECT_EQ(f.state(), task_state::cancelled);
  EXPECT_THROW((void)f.get(), offload::cancelled);
  EXPECT_TRUE(ex.dead_letters().empty());  // cancelled, not failed
  EXPECT_TRUE(counters_reconcile(ex.metrics()));
}

TEST(Cancel, RunningTaskSeesTheRequestAndCancelReturnsFalse) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  std::atomic<bool> started{false};
  auto f = ex.submit([&started] {
    EXPECT_FALSE(offload::this_task::stop_requested());
    started.store(true);
    while (!offload::this_task::stop_requested()) std::this_thread::yield();
    return 7;
  });
  offload_test::eventually([&] {
    return started.load();
  });
  EXPECT_EQ(f.state(), task_state::running);
  EXPECT_FALSE(f.cancel());  // running: it cannot be stopped from outside
  f.wait();                  // it saw the request and returned
  EXPECT_EQ(f.state(), task_state::succeeded);
  EXPECT_FALSE(f.cancel());
  EXPECT_EQ(f.state(), task_state::succeeded);
  EXPECT_EQ(f.get(), 7);
  EXPECT_FALSE(offload::this_task::stop_requested());  // outside a task
}

TEST(Cancel, RunningTaskWithRetriesIsNotRetriedAfterACancel) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  std::atomic<bool> started{false};
  std::atomic<int> runs{0};
  auto f = ex.submit(
      task_options{
          .retry = offload::retry_policy{.max_attempts = 5, .base_delay = 0ms, .max_delay = 0ms}},
      [&]() -> int {
        runs.fetch_add(1);
        started.store(true);
        while (!offload::this_task::stop_requested()) std::this_thread::yield();
        throw std::runtime_error("stopped");
      });
  offload_test::eventually([&] {
    return started.load();
  });
  EXPECT_FALSE(f.cancel());
  f.wait();
  ex.wait_idle();
  EXPECT_EQ(runs.load(), 1);
  EXPECT_EQ(f.state(), task_state::failed);
  EXPECT_THROW((void)f.get(), std::runtime_error);
}

TEST(Cancel, FinishedTaskStaysAsItEnded) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  auto ok = ex.submit([] {
    return 1;
  });
  auto bad = ex.submit(task_options{.key = "bad"}, []() -> int {
    throw std::runtime_error("x");
  });
  ok.wait();
  bad.wait();
  EXPECT_FALSE(ok.cancel());
  EXPECT_FALSE(bad.cancel());
  EXPECT_EQ(ok.state(), task_state::succeeded);
  EXPECT_EQ(bad.state(), task_state::failed);
  EXPECT_EQ(ok.get(), 1);
  EXPECT_THROW((void)bad.get(), std::runtime_error);
}

// ---------------------------------------------------------------------------------------------
// De-duplication keys.

TEST(Key, OneKeyRunsOnceAndEverySubmitterGetsTheValue) {
  auto c = make_clock();
  offload::executor ex{with_clock(2, c)};
  offload_test::gate g;
  hold_workers(ex, g);
  std::atomic<int> runs{0};
  auto task = [&runs] {
    runs.fetch_add(1);
    return std::string("report");
  };
  auto f1 = ex.submit(task_options{.key = "report:1"}, task);
  auto f2 = ex.submit(task_options{.key = "report:1"}, task);
  g.open();
  EXPECT_EQ(f1.get(), "report");
  EXPECT_EQ(f2.get(), "report");
  EXPECT_EQ(runs.load(), 1);
  // Finished: the key is free, so the next submit runs the task again.
  auto f3 = ex.submit(task_options{.key = "report:1"}, task);
  EXPECT_EQ(f3.get(), "report");
  EXPECT_EQ(runs.load(), 2);
  ex.wait_idle();
  EXPECT_TRUE(counters_reconcile(ex.metrics()));
  EXPECT_EQ(ex.metrics().of(lane::normal).submitted, 2u + 2u);  // 2 gate tasks, 2 runs
}

TEST(Key, FollowersGetTheLeadersException) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  offload_test::gate g;
  hold_workers(ex, g);
  auto task = []() -> int {
    throw card_declined("shared failure", 3);
  };
  auto f1 = ex.submit(task_options{.key = "k"}, task);
  auto f2 = ex.submit(task_options{.key = "k"}, task);
  g.open();
  EXPECT_THROW((void)f1.get(), card_declined);
  EXPECT_THROW((void)f2.get(), card_declined);
  ex.wait_idle();
  EXPECT_EQ(ex.dead_letters().size(), 1u);
}

TEST(Key, PostWithAPendingKeyIsDropped) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  offload_test::gate g;
  hold_workers(ex, g);
  std::atomic<int> first{0};
  std::atomic<int> second{0};
  auto f = ex.submit(task_options{.key = "sync"}, [&first] {
    first.fetch_add(1);
    return 1;
  });
  ex.post(task_options{.key = "sync"}, [&second] {
    second.fetch_add(1);
  });
  g.open();
  EXPECT_EQ(f.get(), 1);
  ex.wait_idle();
  EXPECT_EQ(first.load(), 1);
  EXPECT_EQ(second.load(), 0);
  // Free again: a post now runs.
  ex.post(task_options{.key = "sync"}, [&second] {
    second.fetch_add(1);
  });
  ex.wait_idle();
  EXPECT_EQ(second.load(), 1);
}

TEST(Key, DifferentResultTypeThrows) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  offload_test::gate g;
  hold_workers(ex, g);
  auto f = ex.submit(task_options{.key = "typed"}, [] {
    return 1;
  });
  try {
    (void)ex.submit(task_options{.key = "typed"}, [] {
      return std::string("text");
    });
    ADD_FAILURE() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("key"), std::string::npos) << e.what();
  }
  g.open();
  EXPECT_EQ(f.get(), 1);
}

// Every future of a keyed submission reports the one task's state until its result arrives.
TEST(Key, StateFollowsTheTask) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  offload_test::gate inside;
  std::atomic<bool> started{false};
  auto f = ex.submit(task_options{.key = "observed"}, [&] {
    started.store(true);
    inside.wait();
    return 1;
  });
  offload_test::eventually([&] {
    return started.load();
  });
  EXPECT_EQ(f.state(), task_state::running);
  inside.open();
  EXPECT_EQ(f.get(), 1);
}

// cancel() of the only future of a keyed task that is still queued cancels the task: it never
// runs ("a task that has not started never runs").
TEST(Key, CancelOfTheOnlySubmitterStopsTheTask) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  offload_test::gate g;
  hold_workers(ex, g);
  std::atomic<bool> ran{false};
  auto f = ex.submit(task_options{.key = "lonely"}, [&ran] {
    ran.store(true);
    return 1;
  });
  EXPECT_TRUE(f.cancel());
  g.open();
  ex.wait_idle();
  EXPECT_FALSE(ran.load());
  EXPECT_THROW((void)f.get(), offload::cancelled);
}

// With two submitters, one cancel() resolves only that caller's future; the task runs for the
// other. Once both cancelled, the task is cancelled and the key is free for a new task.
TEST(Key, TheTaskIsCancelledOnlyWhenEverySubmitterCancelled) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  offload_test::gate g;
  hold_workers(ex, g);
  std::atomic<int> runs{0};
  auto task = [&runs] {
    runs.fetch_add(1);
    return 7;
  };
  auto a = ex.submit(task_options{.key = "shared"}, task);
  auto b = ex.submit(task_options{.key = "shared"}, task);
  EXPECT_TRUE(a.cancel());
  EXPECT_EQ(a.state(), task_state::cancelled);
  EXPECT_EQ(b.state(), task_state::queued);  // still follows the queued task
  g.open();
  EXPECT_EQ(b.get(), 7);
  EXPECT_THROW((void)a.get(), offload::cancelled);
  EXPECT_EQ(runs.load(), 1);

  offload_test::gate g2;
  hold_workers(ex, g2);
  auto x = ex.submit(task_options{.key = "shared"}, task);
  auto y = ex.submit(task_options{.key = "shared"}, task);
  EXPECT_TRUE(x.cancel());
  EXPECT_TRUE(y.cancel());
  EXPECT_FALSE(y.cancel());  // once only
  // The key is free: a new submission is a new task, and it runs.
  auto z = ex.submit(task_options{.key = "shared"}, task);
  g2.open();
  EXPECT_EQ(z.get(), 7);
  ex.wait_idle();
  EXPECT_EQ(runs.load(), 2);
  EXPECT_THROW((void)x.get(), offload::cancelled);
  EXPECT_THROW((void)y.get(), offload::cancelled);
}

// A running keyed task whose every submitter cancelled sees the request (stop_requested()).
TEST(Key, CancelOfEverySubmitterReachesTheRunningTask) {
  offload::executor ex{{.workers = 1}};
  offload_test::gate started;
  std::atomic<bool> saw_stop{false};
  auto f = ex.submit(task_options{.key = "long"}, [&started, &saw_stop] {
    started.open();
    // Bounded, so that a regression fails instead of hanging.
    const auto give_up = std::chrono::steady_clock::now() + 30s;
    while (!offload::this_task::stop_requested() && std::chrono::steady_clock::now() < give_up)
      std::this_thread::yield();
    saw_stop.store(offload::this_task::stop_requested());
    return 1;
  });
  started.wait();
  EXPECT_EQ(f.state(), task_state::running);
  EXPECT_TRUE(f.cancel());  // the caller's future; the task stops at its next check
  ex.wait_idle();
  EXPECT_TRUE(saw_stop.load());
  EXPECT_THROW((void)f.get(), offload::cancelled);
}

// Once every submitter cancelled a running keyed task, the key is free: a new submission starts a
// fresh task and gets that task's result, not the early return of the one that is stopping.
TEST(Key, ASubmissionAfterEveryoneCancelledStartsAFreshTask) {
  offload::executor ex{{.workers = 2}};  // the fresh task runs beside the stopping one
  offload_test::gate started;
  std::atomic<bool> fresh_done{false};
  auto f = ex.submit(task_options{.key = "stopping"}, [&started, &fresh_done] {
    started.open();
    // Stops only once asked and once the fresh task has run. Bounded, so a regression fails
    // instead of hanging.
    const auto give_up = std::chrono::steady_clock::now() + 30s;
    while ((!offload::this_task::stop_requested() || !fresh_done.load()) &&
           std::chrono::steady_clock::now() < give_up)
      std::this_thread::yield();
    return 1;  // the early return of a stopped task
  });
  started.wait();
  EXPECT_TRUE(f.cancel());
  auto g = ex.submit(task_options{.key = "stopping"}, [&fresh_done] {
    fresh_done.store(true);
    return 2;
  });
  EXPECT_EQ(g.get(), 2);
  ex.wait_idle();
  EXPECT_THROW((void)f.get(), offload::cancelled);
}

// A post() that joined a pending keyed submit() counts as a submitter that never cancels: the
// task still runs when the submit()'s future is cancelled.
TEST(Key, APostThatJoinedKeepsTheTaskWhenTheFutureCancels) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  offload_test::gate g;
  hold_workers(ex, g);
  std::atomic<int> runs{0};
  auto f = ex.submit(task_options{.key = "joined"}, [&runs] {
    runs.fetch_add(1);
    return 1;
  });
  ex.post(task_options{.key = "joined"}, [&runs] {
    runs.fetch_add(1);
    return 1;
  });
  EXPECT_TRUE(f.cancel());
  g.open();
  ex.wait_idle();
  EXPECT_EQ(runs.load(), 1);
  EXPECT_THROW((void)f.get(), offload::cancelled);
}

// A post() holding a key has no result to share, so a submit() of the same key while it is
// pending is refused (std::invalid_argument naming the key), rather than following nothing.
TEST(Key, SubmitAfterPostOfTheSameKeyIsRefused) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  offload_test::gate g;
  hold_workers(ex, g);
  std::atomic<int> runs{0};
  ex.post(task_options{.key = "mixed"}, [&runs] {
    runs.fetch_add(1);
  });
  try {
    ex.submit(task_options{.key = "mixed"}, [&runs] {
      runs.fetch_add(1);
    });
    ADD_FAILURE() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'mixed'"), std::string::npos) << e.what();
  }
  g.open();
  ex.wait_idle();
  EXPECT_EQ(runs.load(), 1);
}

// A keyed task that expires at its deadline while queued frees its key at that moment (the
// expiry releases it), so a new submission of the key runs instead of following the dead task.
TEST(Key, KeyIsFreeOnceItsTaskExpired) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  offload_test::gate g;
  hold_workers(ex, g);
  auto f1 = ex.submit(task_options{.deadline = c->now() + 10ms, .key = "k"}, [] {
    return 1;
  });
  c->advance(10ms);
  offload_test::eventually([&] {
    return f1.is_ready();
  });
  auto f2 = ex.submit(task_options{.key = "k"}, [] {
    return 2;
  });
  g.open();
  EXPECT_THROW((void)f1.get(), offload::expired);
  EXPECT_EQ(f2.get(), 2);
}

// When the expired task is finally reached by a worker, it must not free the key again: the key
// now belongs to the later submission, whose followers must still share its one run.
TEST(Key, AnExpiredTaskDoesNotFreeTheKeyOfItsSuccessor) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  offload_test::gate g;
  hold_workers(ex, g);
  auto f1 = ex.submit(task_options{.deadline = c->now() + 10ms, .key = "k"}, [] {
    return 1;
  });
  c->advance(10ms);
  offload_test::eventually([&] {
    return f1.is_ready();
  });
  std::atomic<int> runs{0};
  offload_test::gate second_may_finish;
  auto f2 = ex.submit(task_options{.key = "k"}, [&] {
    runs.fetch_add(1);
    second_may_finish.wait();
    return 2;
  });
  g.open();  // the worker reaches the expired task first (FIFO), then starts the second one
  offload_test::eventually([&] {
    return runs.load() == 1;
  });
  auto f3 = ex.submit(task_options{.key = "k"}, [&] {
    runs.fetch_add(1);
    return 3;
  });
  second_may_finish.open();
  EXPECT_THROW((void)f1.get(), offload::expired);
  EXPECT_EQ(f2.get(), 2);
  EXPECT_EQ(f3.get(), 2) << "the third submission follows the second task";
  EXPECT_EQ(runs.load(), 1);
}

// ---------------------------------------------------------------------------------------------
// Bad input: rejected at submission, naming the field.

using offload_test::expect_invalid;

TEST(ReliabilityInput, ValidateNamesTheField) {
  expect_invalid(
      [] {
        task_options{.retry = offload::retry_policy{.max_attempts = 0}}.validate();
      },
      "max_attempts");
  expect_invalid(
      [] {
        task_options{.delay = -1ms}.validate();
      },
      "delay");
  expect_invalid(
      [] {
        task_options{.retry = offload::retry_policy{.base_delay = 2s, .max_delay = 1s}}.validate();
      },
      "max_delay");
  expect_invalid(
      [] {
        task_options{.retry = offload::retry_policy{.base_delay = -1ms}}.validate();
      },
      "base_delay");
}

// With another policy field set (a key or retries), the submission takes the policy path and is
// validated.
TEST(ReliabilityInput, RejectedAtSubmissionOnThePolicyPath) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  auto fn = [] {
    return 1;
  };
  expect_invalid(
      [&] {
        (void)ex.submit(task_options{.retry = offload::retry_policy{.max_attempts = 0}, .key = "k"},
                        fn);
      },
      "max_attempts");
  expect_invalid(
      [&] {
        (void)ex.submit(task_options{.delay = -1ms, .key = "k"}, fn);
      },
      "delay");
  expect_invalid(
      [&] {
        (void)ex.submit(task_options{.retry =
                                         offload::retry_policy{
                                             .max_attempts = 3, .base_delay = 2s, .max_delay = 1s}},
                        fn);
      },
      "max_delay");
  expect_invalid(
      [&] {
        (void)ex.submit(
            task_options{.retry = offload::retry_policy{.max_attempts = 3, .base_delay = -1ms}},
            fn);
      },
      "base_delay");
  expect_invalid(
      [&] {
        ex.post(task_options{.retry = offload::retry_policy{.max_attempts = 0}, .key = "k"}, fn);
      },
      "max_attempts");
  // Nothing was accepted, and the key is not left held.
  EXPECT_EQ(ex.submit(task_options{.key = "k"}, fn).get(), 1);
  ex.wait_idle();
  EXPECT_EQ(ex.metrics().of(lane::normal).submitted, 1u);
}

// An invalid field on its own is rejected at submission, even when nothing else sends the task
// down the policy path (submit/post validate every task_options).
TEST(ReliabilityInput, RejectedAtSubmissionOnTheirOwn) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  auto fn = [] {
    return 1;
  };
  expect_invalid(
      [&] {
        (void)ex.submit(task_options{.retry = offload::retry_policy{.max_attempts = 0}}, fn);
      },
      "max_attempts");
  expect_invalid(
      [&] {
        (void)ex.submit(task_options{.delay = -1ms}, fn);
      },
      "delay");
  expect_invalid(
      [&] {
        (void)ex.submit(
            task_options{.retry = offload::retry_policy{.base_delay = 2s, .max_delay = 1s}}, fn);
      },
      "max_delay");
  expect_invalid(
      [&] {
        (void)ex.submit(task_options{.retry = offload::retry_policy{.base_delay = -1ms}}, fn);
      },
      "base_delay");
  expect_invalid(
      [&] {
        ex.post(task_options{.retry = offload::retry_policy{.max_attempts = 0}}, [] {});
      },
      "max_attempts");
  expect_invalid(
      [&] {
        ex.post(task_options{.delay = -5s}, [] {});
      },
      "delay");
  ex.wait_idle();
  EXPECT_EQ(ex.metrics().of(lane::normal).submitted, 0u);
}

// ---------------------------------------------------------------------------------------------
// Shutdown with timed work, and the counters.

class ReliabilityShutdown : public ::testing::TestWithParam<offload::shutdown_mode> {};

TEST_P(ReliabilityShutdown, ResolvesDelayedAndRetryWaitingTasksAsCancelled) {
  auto c = make_clock();
  offload::executor ex{with_clock(2, c)};
  std::atomic<int> delayed_runs{0};
  std::atomic<int> retry_runs{0};
  auto delayed = ex.submit(task_options{.lane = lane::high, .delay = 1h}, [&delayed_runs] {
    delayed_runs.fetch_add(1);
    return 1;
  });
  ex.post(task_options{.lane = lane::low, .delay = 2h}, [&delayed_runs] {
    delayed_runs.fetch_add(1);
  });
  auto retrying = ex.submit(
      task_options{.retry =
                       offload::retry_policy{.max_attempts = 3, .base_delay = 1h, .max_delay = 1h}},
      [&retry_runs]() -> int {
        retry_runs.fetch_add(1);
        throw std::runtime_error("fails");
      });
  offload_test::eventually([&] {
    return retrying.state() == task_state::retrying;
  });
  ex.shutdown(GetParam());  // returns: nothing waits for the clock
  EXPECT_TRUE(delayed.is_ready());
  EXPECT_TRUE(retrying.is_ready());
  EXPECT_EQ(delayed.state(), task_state::cancelled);
  EXPECT_EQ(retrying.state(), task_state::cancelled);
  EXPECT_THROW((void)delayed.get(), offload::cancelled);
  EXPECT_THROW((void)retrying.get(), offload::cancelled);
  EXPECT_EQ(delayed_runs.load(), 0);
  EXPECT_EQ(retry_runs.load(), 1);
  const auto m = ex.metrics();
  EXPECT_TRUE(counters_reconcile(m));
  for (const auto& lm : m.lanes) {
    EXPECT_EQ(lm.scheduled, 0u);
    EXPECT_EQ(lm.queued, 0u);
    EXPECT_EQ(lm.running, 0u);
  }
  EXPECT_EQ(m.of(lane::high).completed_of(offload::task_outcome::cancelled), 1u);
  EXPECT_EQ(m.of(lane::low).completed_of(offload::task_outcome::cancelled), 1u);
  EXPECT_EQ(m.of(lane::normal).completed_of(offload::task_outcome::cancelled), 1u);
  EXPECT_THROW((void)ex.submit(task_options{.delay = 1ms},
                               [] {
                                 return 1;
                               }),
               offload::rejected);
  c->advance(3h);  // after shutdown: nothing left to fire
}

INSTANTIATE_TEST_SUITE_P(Modes,
                         ReliabilityShutdown,
                         ::testing::Values(offload::shutdown_mode::drain,
                                           offload::shutdown_mode::cancel),
                         [](const auto& param_info) {
                           return param_info.param == offload::shutdown_mode::drain ? "drain"
                                                                                    : "cancel";
                         });

TEST(ReliabilityShutdown, DestructorDoesNotWaitForTimers) {
  auto c = make_clock();
  offload::future<int> f;
  {
    offload::executor ex{with_clock(1, c)};
    f = ex.submit(task_options{.delay = 24h}, [] {
      return 1;
    });
  }
  EXPECT_THROW((void)f.get(), offload::cancelled);
}

// shutdown(drain) runs a queued task whose deadline is still ahead: stopping the timer drops
// expiry entries that are not due (it runs only those already due). Here: the worker is held, a
// task with a deadline 1 h away is queued, and a delayed task due after that deadline is the
// witness that the timer was stopped.
TEST(ReliabilityShutdown, DrainRunsAQueuedTaskWhoseDeadlineHasNotPassed) {
  auto c = make_clock();
  offload::executor ex{with_clock(1, c)};
  offload_test::gate g;
  hold_workers(ex, g);
  auto f = ex.submit(task_options{.deadline = c->now() + 1h}, [] {
    return 5;
  });
  auto witness = ex.submit(task_options{.delay = 2h}, [] {
    return 0;
  });
  std::thread stopper([&] {
    ex.shutdown(offload::shutdown_mode::drain);
  });
  // The timer's entries are resolved in due order: once the witness is, the expiry has run.
  offload_test::eventually([&] {
    return witness.is_ready();
  });
  g.open();
  stopper.join();
  EXPECT_EQ(f.state(), task_state::succeeded);
  EXPECT_EQ(f.get(), 5);
}

TEST(ReliabilityCounters, ReconcileWithTimedWork) {
  auto c = make_clock();
  offload::executor ex{with_clock(2, c)};
  std::vector<offload::future<int>> futures;
  for (int i = 0; i < 10; ++i) {
    futures.push_back(ex.submit(task_options{.lane = lane::high}, [i] {
      return i;
    }));
  }
  futures.push_back(ex.submit(task_options{.lane = lane::high, .delay = 10ms}, [] {
    return 100;
  }));
  futures.push_back(
      ex.submit(task_options{.retry = offload::retry_policy{.max_attempts = 3, .base_delay = 10ms}},
                [n = std::make_shared<int>(0)] {
                  if (++*n < 3)
                    throw std::runtime_error("again");
                  return 200;
                }));
  futures.push_back(ex.submit(task_options{.delay = 20ms}, []() -> int {
    throw std::runtime_error("delayed failure");
  }));
  auto cancelled = ex.submit(task_options{.lane = lane::low, .delay = 10ms}, [] {
    return 1;
  });
  EXPECT_TRUE(cancelled.cancel());
  auto expired =
      ex.submit(task_options{.lane = lane::low, .delay = 30ms, .deadline = c->now() + 5ms}, [] {
        return 1;
      });
  // Quiet with work in the timer: the identity holds with scheduled > 0.
  offload_test::eventually([&] {
    const auto m = ex.metrics();
    return m.of(lane::high).completed_total() == 10 && m.of(lane::normal).retries == 1 &&
           m.of(lane::normal).running == 0;
  });
  {
    const auto m = ex.metrics();
    EXPECT_TRUE(counters_reconcile(m));
    EXPECT_EQ(m.of(lane::high).scheduled, 1u);
    EXPECT_EQ(m.of(lane::normal).scheduled, 2u);  // the retry and the delayed failure
    EXPECT_EQ(m.of(lane::low).scheduled, 1u);     // the expiring one (a cancel leaves at once)
  }
  c->advance(10ms);  // t0 + 10 ms: retry 1, the high delayed task, the cancelled one
  offload_test::eventually([&] {
    return ex.metrics().of(lane::normal).retries == 2;  // attempt 2 failed: retry 2 at +30 ms
  });
  c->advance(30ms);  // t0 + 40 ms: everything is due
  ex.wait_idle();
  const auto m = ex.metrics();
  EXPECT_TRUE(counters_reconcile(m));
  for (const auto& lm : m.lanes) {
    EXPECT_EQ(lm.scheduled, 0u);
    EXPECT_EQ(lm.queued, 0u);
    EXPECT_EQ(lm.running, 0u);
    EXPECT_EQ(lm.submitted, lm.completed_total());
  }
  EXPECT_EQ(m.of(lane::high).completed_of(offload::task_outcome::succeeded), 11u);
  EXPECT_EQ(m.of(lane::normal).completed_of(offload::task_outcome::succeeded), 1u);
  EXPECT_EQ(m.of(lane::normal).completed_of(offload::task_outcome::failed), 1u);
  EXPECT_EQ(m.of(lane::normal).retries, 2u);
  EXPECT_EQ(m.of(lane::low).completed_of(offload::task_outcome::cancelled), 1u);
  EXPECT_EQ(m.of(lane::low).completed_of(offload::task_outcome::expired), 1u);
  EXPECT_THROW((void)expired.get(), offload::expired);
  EXPECT_THROW((void)cancelled.get(), offload::cancelled);
  for (std::size_t i = 0; i < 10; ++i) EXPECT_EQ(futures[i].get(), static_cast<int>(i));
  EXPECT_EQ(futures[10].get(), 100);
  EXPECT_EQ(futures[11].get(), 200);
  EXPECT_THROW((void)futures[12].get(), std::runtime_error);
}

}  // namespace

// A task that takes a std::stop_token sees cancel() while it runs, through the token and its
// std::stop_callbacks.
TEST(StopToken, CancelWhileRunningStopsTheToken) {
  offload::executor ex{offload::executor_options{.workers = 2}};
  std::atomic<bool> started{false};
  std::atomic<bool> callback_ran{false};
  auto f = ex.submit([&](std::stop_token token) {
    std::stop_callback on_stop(token, [&] {
      callback_ran.store(true);
    });
    started.store(true);
    while (!token.stop_requested()) std::this_thread::yield();
    return 7;
  });
  while (!started.load()) std::this_thread::yield();
  EXPECT_FALSE(f.cancel());  // running: not cancelled, but asked to stop
  EXPECT_EQ(f.get(), 7);
  EXPECT_TRUE(callback_ran.load());
}

TEST(StopToken, ArgumentsFollowTheToken) {
  offload::executor ex{offload::executor_options{.workers = 1}};
  auto f = ex.submit(
      [](std::stop_token token, int a, int b) {
        return token.stop_possible() && !token.stop_requested() ? a + b : -1;
      },
      2,
      3);
  EXPECT_EQ(f.get(), 5);
}

TEST(StopToken, PostGetsATokenThatNeverStops) {
  offload::executor ex{offload::executor_options{.workers = 1}};
  std::atomic<int> seen{-1};
  ex.post([&](std::stop_token token) {
    seen.store(token.stop_possible() ? 1 : 0);
  });
  ex.wait_idle();
  EXPECT_EQ(seen.load(), 0);
}

TEST(StopToken, RetriedTaskKeepsItsToken) {
  offload::executor ex{offload::executor_options{.workers = 1}};
  auto f = ex.submit(
      offload::task_options{.retry = offload::retry_policy{.max_attempts = 2, .base_delay = 1ms}},
      [](std::stop_token token) {
        if (offload::this_task::attempt() == 1)
          throw std::runtime_error("transient");
        return token.stop_possible();
      });
  EXPECT_TRUE(f.get());
}
