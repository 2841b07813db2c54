// Continuations: chains of any length resolve with constant stack depth; the timer thread never
// runs user code (continuations and coroutine resumptions released by a deadline run on
// workers); a continuation that cannot be scheduled carries its antecedent's outcome; a task's
// outcome is how it ended, the same in state(), metrics and dead letters.

#include <atomic>
#include <chrono>
#include <future>
#include <stdexcept>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <offload/offload.hpp>

namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

offload::future<int> chain_of(offload::future<int> f, int links) {
  for (int i = 0; i < links; ++i) {
    f = std::move(f).then([](int x) {
      return x + 1;
    });
  }
  return f;
}

TEST(Continuations, ALongChainOnAPromiseResolvesOnAPlainThread) {
  offload::promise<int> p;
  auto last = chain_of(p.get_future(), 300'000);
  p.set_value(0);
  EXPECT_EQ(last.get(), 300'000);
}

TEST(Continuations, ALongChainOnAPromiseResolvesInsideATask) {
  offload::executor ex{{.workers = 1}};
  auto result = ex.submit([] {
    offload::promise<int> p;
    auto last = chain_of(p.get_future(), 20'000);
    p.set_value(0);
    return last.get();
  });
  EXPECT_EQ(result.get(), 20'000);
}

TEST(Continuations, AFailureForwardsDownALongChain) {
  offload::promise<int> p;
  auto last = chain_of(p.get_future(), 100'000);
  p.set_exception(std::make_exception_ptr(std::runtime_error("root")));
  EXPECT_EQ(last.state(), offload::task_state::failed);
  EXPECT_THROW(last.get(), std::runtime_error);
}

TEST(Continuations, ALongChainOfExecutorFuturesResolves) {
  offload::executor ex{{.workers = 2}};
  auto last = chain_of(ex.submit([] {
    return 0;
  }),
                       20'000);
  EXPECT_EQ(last.get(), 20'000);
}

/// How late a task delayed by `delay` starts, submitted now.
class lateness_probe {
 public:
  lateness_probe(offload::executor& ex, std::chrono::milliseconds delay)
      : m_due(steady::now() + delay),
        m_started(ex.submit(offload::task_options{.delay = delay}, [] {
          return steady::now();
        })) {}
  std::chrono::milliseconds late() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(m_started.get() - m_due);
  }

 private:
  steady::time_point m_due;
  offload::future<steady::time_point> m_started;
};

/// A future of a task that expires after `after`: it waits for a delay that outlasts its deadline.
offload::future<int> expiring(offload::executor& ex, std::chrono::milliseconds after) {
  return ex.submit(offload::task_options{.delay = 1h, .deadline = offload::clock::now() + after},
                   [] {
                     return 1;
                   });
}

// A coroutine that runs outside the pool and awaits a future that a deadline resolves used to
// continue on the timer thread; one that then sleeps stalled every timer of the executor.
TEST(Continuations, ACoroutineResumedByADeadlineDoesNotRunOnTheTimerThread) {
  offload::executor ex{{.workers = 2}};
  auto doomed = expiring(ex, 20ms);
  std::thread outside([&] {
    offload::sync_wait([&]() -> offload::task<void> {
      try {
        (void)co_await std::move(doomed);
      } catch (const offload::expired&) {
      }
      co_await offload::sleep_for(300ms);  // on a worker now: suspends, holds no thread
    }());
  });
  lateness_probe probe(ex, 60ms);
  EXPECT_LT(probe.late(), 150ms) << "the timer thread ran the coroutine";
  outside.join();
}

// A then() continuation released by a deadline, landing in a full `block` lane, used to wait out
// block_timeout on the timer thread.
TEST(Continuations, AContinuationReleasedByADeadlineNeverBlocksTheTimer) {
  offload::executor_options o{.workers = 1};
  o.lanes[offload::index_of(offload::lane::normal)] = {
      .capacity = 1, .overflow = offload::overflow_policy::block, .block_timeout = 1s};
  std::atomic<bool> release{false};  // declared before ex: the held task reads it until ex joins
  offload::executor ex{o};
  ex.post(offload::task_options{.lane = offload::lane::high}, [&] {
    while (!release) std::this_thread::sleep_for(1ms);
  });
  ex.post([] {});  // fills lane normal while the only worker is held
  auto next = expiring(ex, 20ms).then([](int x) {
    return x;
  });
  // A second deadline, later: the timer resolves it on time only if it is not stuck.
  const auto start = steady::now();
  auto second = expiring(ex, 60ms);
  const bool on_time = second.wait_for(400ms) == std::future_status::ready;
  const auto took = steady::now() - start;
  release = true;
  EXPECT_TRUE(on_time) << "the timer thread waited for room in a full lane";
  EXPECT_LT(took, 300ms);
  EXPECT_THROW(next.get(), offload::expired);
}

// A continuation that the executor refuses (it stopped) carries the antecedent's failure, not
// offload::rejected.
TEST(Continuations, AContinuationThatCannotRunCarriesTheAntecedentsOutcome) {
  {
    offload::executor ex{{.workers = 1}};
    auto ok = ex.submit([] {
      return 1;
    });
    auto failed = ex.submit([]() -> int {
      throw std::logic_error("antecedent");
    });
    ok.wait();
    failed.wait();
    ex.shutdown();  // stopped: a continuation has nowhere to run
    auto after_ok = std::move(ok).then([](int x) {
      return x + 1;
    });
    auto after_failed = std::move(failed).then([](int x) {
      return x + 1;
    });
    EXPECT_THROW(after_ok.get(), offload::rejected);
    EXPECT_THROW(after_failed.get(), std::logic_error);
  }
  offload::executor_options o{.workers = 1};
  o.lanes[offload::index_of(offload::lane::normal)] = {.capacity = 1};  // reject when full
  std::atomic<bool> release{false};  // declared before ex: the held task reads it until ex joins
  offload::executor ex{o};
  ex.post(offload::task_options{.lane = offload::lane::high}, [&] {
    while (!release) std::this_thread::sleep_for(1ms);
  });
  ex.post([] {});  // lane normal full
  struct release_on_exit {
    std::atomic<bool>& flag;
    ~release_on_exit() { flag = true; }
  } guard{release};
  auto expired_then = expiring(ex, 10ms).then([](int x) {
    return x;
  });
  ASSERT_EQ(expired_then.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(expired_then.state(), offload::task_state::expired);
  EXPECT_THROW(expired_then.get(), offload::expired);
}

// A task that itself throws offload::cancelled or offload::expired failed: its state, the
// metrics and the dead letters agree.
TEST(Outcomes, ATaskThrowingCancelledOrExpiredItselfFailed) {
  offload::executor ex{{.workers = 1}};
  auto c = ex.submit([]() -> int {
    throw offload::cancelled("thrown by the task");
  });
  auto e = ex.submit([]() -> int {
    throw offload::expired("thrown by the task");
  });
  auto r = ex.submit(
      offload::task_options{.retry = offload::retry_policy{.max_attempts = 2, .base_delay = 1ms}},
      []() -> int {
        throw offload::cancelled("thrown by a retried task");
      });
  EXPECT_THROW(c.get(), offload::cancelled);
  EXPECT_THROW(e.get(), offload::expired);
  EXPECT_THROW(r.get(), offload::cancelled);
  ex.wait_idle();
  const auto m = ex.metrics();
  const auto& normal = m.lanes[offload::index_of(offload::lane::normal)];
  EXPECT_EQ(normal.completed[std::size_t(offload::task_outcome::failed)], 3u);
  EXPECT_EQ(normal.completed[std::size_t(offload::task_outcome::cancelled)], 0u);
  EXPECT_EQ(normal.completed[std::size_t(offload::task_outcome::expired)], 0u);
  EXPECT_EQ(ex.dead_letters().size(), 3u);
}

TEST(Outcomes, StateReportsHowTheTaskEnded) {
  offload::executor ex{{.workers = 1}};
  auto c = ex.submit([]() -> int {
    throw offload::cancelled("thrown by the task");
  });
  c.wait();
  EXPECT_EQ(c.state(), offload::task_state::failed);
  auto q = ex.submit(offload::task_options{.delay = 1h}, [] {
    return 1;
  });
  EXPECT_TRUE(q.cancel());
  EXPECT_EQ(q.state(), offload::task_state::cancelled);
  auto d = expiring(ex, 1ms);
  d.wait();
  EXPECT_EQ(d.state(), offload::task_state::expired);
}

// The cooperative answer to cancel(): a running task sees stop_requested() and throws
// offload::cancelled. It ended cancelled, everywhere, and is not a dead letter.
TEST(Outcomes, ARunningTaskThatHonoursCancelEndsCancelled) {
  offload::executor ex{{.workers = 1}};
  for (const bool with_policy : {false, true}) {
    std::atomic<bool> started{false};
    auto body = [&started]() -> int {
      started = true;
      while (!offload::this_task::stop_requested()) std::this_thread::sleep_for(100us);
      throw offload::cancelled("stopped on request");
    };
    auto f =
        with_policy
            ? ex.submit(offload::task_options{.retry = offload::retry_policy{.max_attempts = 3}},
                        body)
            : ex.submit(body);
    while (!started) std::this_thread::yield();
    EXPECT_FALSE(f.cancel());  // running: the request is delivered, the task decides
    f.wait();
    EXPECT_EQ(f.state(), offload::task_state::cancelled);
    EXPECT_THROW(f.get(), offload::cancelled);
  }
  ex.wait_idle();
  const auto m = ex.metrics();
  const auto& normal = m.lanes[offload::index_of(offload::lane::normal)];
  EXPECT_EQ(normal.completed[std::size_t(offload::task_outcome::cancelled)], 2u);
  EXPECT_EQ(normal.completed[std::size_t(offload::task_outcome::failed)], 0u);
  EXPECT_TRUE(ex.dead_letters().empty());
}

TEST(WhenAny, AnEmptyVectorIsRefused) {
  EXPECT_THROW(offload::when_any(std::vector<offload::future<int>>{}), std::invalid_argument);
}

}  // namespace
