// De-duplication keys: one task per pending key, followers, cancellation, expiry.
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

}  // namespace
