// Accounting and submission racing shutdown and cancel: what submitters saw matches the metrics,
// caller_runs submitters never hang a shutdown, a retry's accounting is done before a cancel can
// resolve it, and a requeue that cannot happen keeps its dead letter.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <thread>
#include <vector>

#include "unit/test_support.hpp"
#include <gtest/gtest.h>

#include "offload/offload.hpp"

using namespace std::chrono_literals;
using offload::lane;
using offload::overflow_policy;
using offload::task_options;
using offload::task_state;

namespace {

std::uint64_t rejected_total(const offload::metrics_snapshot& m) {
  std::uint64_t n = 0;
  for (const auto& l : m.lanes) n += l.rejected;
  return n;
}

std::uint64_t running_total(const offload::metrics_snapshot& m) {
  std::uint64_t n = 0;
  for (const auto& l : m.lanes) n += l.running;
  return n;
}

}  // namespace

// Every way of submitting from outside the pool, racing shutdown(): each offload::rejected a
// submitter caught is one count of offload_tasks_rejected_total, and nothing else is counted.
TEST(ShutdownRace, RejectedTotalMatchesTheThrowsSubmittersSaw) {
  for (int round = 0; round < 40; ++round) {
    offload::executor_options o{.workers = 2};
    o.lanes[index_of(lane::low)].capacity = 2;
    o.lanes[index_of(lane::low)].overflow = overflow_policy::caller_runs;
    o.lanes[index_of(lane::high)].capacity = 2;
    o.lanes[index_of(lane::high)].overflow = overflow_policy::reject;
    offload::executor ex{o};
    std::atomic<std::uint64_t> throws{0};
    std::atomic<bool> stop{false};
    std::vector<std::thread> submitters;
    for (int t = 0; t < 3; ++t) {
      submitters.emplace_back([&, t] {
        for (int i = 0; !stop.load(std::memory_order_relaxed); ++i) {
          try {
            switch ((i + t) % 6) {
              case 0:
                (void)ex.submit([] {
                  return 1;
                });
                break;
              case 1:
                ex.post([] {});
                break;
              case 2:
                (void)ex.submit(task_options{.delay = 1ms}, [] {
                  return 2;
                });
                break;
              case 3:
                (void)ex.schedule_every(1h, {}, [] {});
                break;
              case 4:
                ex.post(task_options{.lane = lane::low}, [] {});
                break;
              default:
                ex.post(task_options{.lane = lane::high}, [] {});
                break;
            }
          } catch (const offload::rejected&) {
            throws.fetch_add(1, std::memory_order_relaxed);
            (void)ex.metrics();  // read while racing, as a monitoring thread would
          }
          if (i > 50 && round % 2 == 0)
            std::this_thread::yield();
        }
      });
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200 * (round % 5 + 1)));
    ex.shutdown(round % 2 == 0 ? offload::shutdown_mode::drain : offload::shutdown_mode::cancel);
    stop.store(true);
    for (auto& s : submitters) s.join();
    const auto m = ex.metrics();
    ASSERT_EQ(rejected_total(m), throws.load()) << "round " << round;
    ASSERT_TRUE(offload_test::counters_reconcile(m)) << "round " << round;
  }
}

// Submitters on a full caller_runs lane run tasks on their own threads (reading stats() and
// metrics() from inside them, or starting fresh threads that submit) while another thread shuts
// down: shutdown() returns, every thread ends, and the counters add up.
TEST(ShutdownRace, CallerRunsSubmittersNeverHangAShutdown) {
  for (int round = 0; round < 20; ++round) {
    offload::executor_options o{.workers = 1};
    o.lanes[index_of(lane::normal)].capacity = 1;
    o.lanes[index_of(lane::normal)].overflow = overflow_policy::caller_runs;
    offload::executor ex{o};
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> ran{0};
    auto body = [&] {
      ran.fetch_add(1, std::memory_order_relaxed);
      (void)ex.stats();
      (void)ex.metrics();
    };
    std::vector<std::thread> threads;
    for (int t = 0; t < 3; ++t) {
      threads.emplace_back([&, t] {
        while (!stop.load(std::memory_order_relaxed)) {
          try {
            if (t == 2) {
              std::thread fresh([&] {
                try {
                  ex.post(body);
                } catch (const offload::rejected&) {
                }
              });
              fresh.join();
            } else {
              ex.post(body);
            }
          } catch (const offload::rejected&) {
          }
        }
      });
    }
    offload_test::eventually([&] {
      return ran.load() > 0;
    });
    std::this_thread::sleep_for(std::chrono::microseconds(500 * (round % 4)));
    ex.shutdown();
    stop.store(true);
    for (auto& t : threads) t.join();
    const auto s = ex.stats();
    EXPECT_EQ(s.submitted, s.completed) << "round " << round;
  }
}

// A task that retries and is cancelled while its retry waits: once cancel() has resolved it,
// wait_idle() returns with the failed attempt's accounting done (nothing reported running).
TEST(ShutdownRace, ACancelledRetryIsAccountedBeforeWaitIdleReturns) {
  offload::executor ex{{.workers = 2}};
  for (int round = 0; round < 300; ++round) {
    auto f = ex.submit(
        task_options{
            .retry = offload::retry_policy{.max_attempts = 5, .base_delay = 1h, .max_delay = 1h}},
        []() -> int {
          throw std::runtime_error("fails");
        });
    while (f.state() != task_state::retrying) std::this_thread::yield();
    ASSERT_TRUE(f.cancel());
    ex.wait_idle();
    const auto m = ex.metrics();
    ASSERT_EQ(running_total(m), 0u) << "round " << round;
    ASSERT_TRUE(offload_test::counters_reconcile(m)) << "round " << round;
  }
}

// A task run by its submitter (caller_runs) that fails and retries: the failed attempt is not
// final, so the task is counted once, completed once, and its retry counted.
TEST(ShutdownRace, ARetriedCallerRunsTaskIsCountedOnce) {
  offload::executor_options o{.workers = 1};
  o.lanes[index_of(lane::normal)].capacity = 1;
  o.lanes[index_of(lane::normal)].overflow = overflow_policy::caller_runs;
  offload::executor ex{o};
  offload_test::gate hold;
  std::atomic<bool> started{false};
  ex.post([&] {
    started = true;
    hold.wait();
  });
  offload_test::eventually([&] {
    return started.load();
  });
  ex.post([] {});  // fills the lane: the next submission runs here
  std::atomic<int> runs{0};
  auto f = ex.submit(
      task_options{.retry = offload::retry_policy{.max_attempts = 3, .base_delay = 1ms}}, [&] {
        if (runs.fetch_add(1) == 0)
          throw std::runtime_error("first attempt fails");
        return 7;
      });
  EXPECT_EQ(runs.load(), 1);  // the first attempt ran on this thread
  hold.open();
  EXPECT_EQ(f.get(), 7);
  ex.wait_idle();
  const auto s = ex.stats();
  EXPECT_EQ(s.submitted, 3u);
  EXPECT_EQ(s.completed, 3u);
  const auto m = ex.metrics();
  EXPECT_EQ(m.lanes[index_of(lane::normal)].retries, 1u);
  EXPECT_TRUE(offload_test::counters_reconcile(m));
}

// requeue() after shutdown: refused (offload::rejected), and the dead letter is still there.
TEST(ShutdownRace, ARefusedRequeueKeepsTheDeadLetter) {
  offload::executor ex{{.workers = 1}};
  ex.post(task_options{.retry = offload::retry_policy{.max_attempts = 2, .base_delay = 0ms},
                       .name = "fails"},
          [] {
            throw std::runtime_error("boom");
          });
  ex.wait_idle();
  ASSERT_EQ(ex.dead_letters().size(), 1u);
  const offload::dead_letter record = ex.dead_letters().front();
  ASSERT_TRUE(record.requeueable());
  ex.shutdown();
  EXPECT_THROW((void)ex.requeue(record), offload::rejected);
  const auto kept = ex.dead_letters();
  ASSERT_EQ(kept.size(), 1u);
  EXPECT_EQ(kept.front().id, record.id);
  EXPECT_EQ(kept.front().name, "fails");
}

// schedule_every() after shutdown throws offload::rejected, as every submission does.
TEST(ShutdownRace, ScheduleEveryAfterShutdownIsRejected) {
  offload::executor ex{{.workers = 1}};
  ex.shutdown();
  EXPECT_THROW((void)ex.schedule_every(10ms, {}, [] {}), offload::rejected);
  EXPECT_EQ(rejected_total(ex.metrics()), 1u);
}
