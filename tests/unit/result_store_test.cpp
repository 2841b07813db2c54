// offload::result_store: tasks found by id (the 202 pattern).
#include <atomic>
#include <chrono>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <offload/offload.hpp>

namespace {

using namespace std::chrono_literals;

/// Polls until `done()` or 10 s (then fails the test).
template <class Done>
void eventually(Done done) {
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (!done()) {
    ASSERT_LT(std::chrono::steady_clock::now(), until) << "condition not reached in 10 s";
    std::this_thread::sleep_for(200us);
  }
}

TEST(ResultStore, IdsAreUuidsAndFindShowsTheValue) {
  offload::executor ex{{.workers = 2}};
  offload::result_store<int> store{ex};
  std::set<std::string> ids;
  for (int i = 0; i < 100; ++i)
    ids.insert(store.submit([i] {
      return i * 2;
    }));
  EXPECT_EQ(ids.size(), 100u);
  const std::string id = *ids.begin();
  ASSERT_EQ(id.size(), 36u);
  EXPECT_EQ(id[8], '-');
  EXPECT_EQ(id[14], '4');  // version 4
  ex.wait_idle();
  for (const std::string& i : ids) {
    auto v = store.find(i);
    ASSERT_TRUE(v);
    EXPECT_EQ(v->state(), offload::task_state::succeeded);
    EXPECT_EQ(v->attempts(), 1u);
    EXPECT_EQ(v->id(), i);
    EXPECT_FALSE(v->error());
    EXPECT_GE(v->value(), 0);
  }
  EXPECT_FALSE(store.find("no-such-id"));
}

TEST(ResultStore, ATaskKnowsItsIdAndItsName) {
  offload::executor ex{{.workers = 1}};
  offload::result_store<std::string> store{ex};
  const std::string id = store.submit(offload::task_options{.name = "report"}, [] {
    return std::string(offload::this_task::id());
  });
  ex.wait_idle();
  EXPECT_EQ(store.find(id)->value(), id);
  EXPECT_EQ(store.find(id)->name(), "report");
  EXPECT_EQ(offload::this_task::id(), "");
  EXPECT_EQ(ex.submit([] {
                return std::string(offload::this_task::id());
              }).get(),
            "");
}

TEST(ResultStore, ProgressNeverMovesBack) {
  offload::executor ex{{.workers = 1}};
  offload::result_store<int> store{ex};
  const std::string id = store.submit([] {
    offload::this_task::set_progress(60);
    offload::this_task::set_progress(20);  // a retry starting over, say
    return 0;
  });
  ex.wait_idle();
  EXPECT_EQ(*store.find(id)->progress(), 60);
}

TEST(ResultStore, FindNeverWaitsAndSeesRunningAndProgress) {
  offload::executor ex{{.workers = 1}};
  offload::result_store<std::string> store{ex};
  std::atomic<bool> release{false};
  const std::string id = store.submit([&] {
    offload::this_task::set_progress(40);
    while (!release.load()) std::this_thread::sleep_for(100us);
    offload::this_task::set_progress(100);
    return std::string("report");
  });
  eventually([&] {
    return store.find(id)->progress().has_value();
  });
  auto running = store.find(id);
  EXPECT_EQ(running->state(), offload::task_state::running);
  EXPECT_EQ(*running->progress(), 40);
  EXPECT_THROW((void)running->value(), std::logic_error);
  EXPECT_FALSE(running->error());
  release.store(true);
  eventually([&] {
    return store.find(id)->state() == offload::task_state::succeeded;
  });
  auto done = store.find(id);
  EXPECT_EQ(done->value(), "report");
  EXPECT_EQ(*done->progress(), 100);
  EXPECT_THROW(offload::this_task::set_progress(101), std::invalid_argument);
  offload::this_task::set_progress(50);  // outside a store task: does nothing
}

TEST(ResultStore, FailuresGiveTheExceptionsTypeAndText) {
  offload::executor ex{{.workers = 2}};
  offload::result_store<int> store{ex};
  const std::string id = store.submit(
      offload::task_options{.retry = offload::retry_policy{.max_attempts = 3, .base_delay = 1ms}},
      []() -> int {
        throw std::runtime_error("disk full");
      });
  eventually([&] {
    return store.find(id)->state() == offload::task_state::failed;
  });
  auto v = store.find(id);
  EXPECT_EQ(v->attempts(), 3u);
  ASSERT_TRUE(v->error());
  EXPECT_EQ(v->error()->type, "std::runtime_error");
  EXPECT_EQ(v->error()->message, "disk full");
}

TEST(ResultStore, CancelStopsAQueuedTaskAndARunningOne) {
  offload::executor ex{{.workers = 1}};
  offload::result_store<int> store{ex};
  std::atomic<bool> started{false};
  const std::string running = store.submit([&] {
    started.store(true);
    while (!offload::this_task::stop_requested()) std::this_thread::sleep_for(100us);
    throw offload::cancelled("stopped");
    return 0;
  });
  const std::string queued = store.submit([] {
    return 1;
  });
  eventually([&] {
    return started.load();
  });
  EXPECT_TRUE(store.cancel(queued));
  EXPECT_EQ(store.find(queued)->state(), offload::task_state::cancelled);
  EXPECT_EQ(store.find(queued)->error()->type, "offload::cancelled");
  store.cancel(running);
  eventually([&] {
    return store.find(running)->state() == offload::task_state::cancelled;
  });
  EXPECT_FALSE(store.cancel("no-such-id"));
}

TEST(ResultStore, FinishedEntriesAreEvictedAfterKeepFor) {
  offload::executor ex{{.workers = 2}};
  offload::result_store<int> store{ex, {.keep_for = 50ms, .max_entries = 1000}};
  const std::string id = store.submit([] {
    return 7;
  });
  eventually([&] {
    return store.find(id)->state() == offload::task_state::succeeded;
  });
  std::this_thread::sleep_for(60ms);
  EXPECT_FALSE(store.find(id)) << "evicted once keep_for passed";
  EXPECT_EQ(store.size(), 0u);
}

TEST(ResultStore, AtMaxEntriesTheOldestFinishedGoFirstAndOnlyUnfinishedRefuse) {
  offload::executor ex{{.workers = 1}};
  offload::result_store<int> store{ex, {.keep_for = 1h, .max_entries = 3}};
  const std::string a = store.submit([] {
    return 1;
  });
  eventually([&] {
    return store.find(a)->state() == offload::task_state::succeeded;
  });
  const std::string b = store.submit([] {
    return 2;
  });
  eventually([&] {
    return store.find(b)->state() == offload::task_state::succeeded;
  });
  std::atomic<bool> release{false};
  const std::string c = store.submit([&] {
    while (!release.load()) std::this_thread::sleep_for(100us);
    return 3;
  });
  const std::string d = store.submit([] {
    return 4;
  });  // evicts a, the oldest finished
  EXPECT_FALSE(store.find(a));
  EXPECT_TRUE(store.find(b));
  const std::string e = store.submit([] {
    return 5;
  });  // evicts b
  EXPECT_FALSE(store.find(b));
  // c runs, d and e wait behind it: nothing finished to evict.
  EXPECT_THROW(store.submit([] {
    return 6;
  }),
               offload::rejected);
  EXPECT_EQ(store.size(), 3u);
  release.store(true);
  ex.wait_idle();
  EXPECT_EQ(store.find(c)->value(), 3);
  EXPECT_EQ(store.find(e)->value(), 5);
  EXPECT_NO_THROW(store.submit([] {
    return 7;
  }));
  EXPECT_THROW((offload::result_store<int>{ex, {.max_entries = 0}}), std::invalid_argument);
}

TEST(ResultStore, ARequeuedDeadLetterKeepsItsId) {
  offload::executor ex{{.workers = 2}};
  offload::result_store<int> store{ex};
  std::atomic<int> runs{0};
  const std::string id = store.submit(
      offload::task_options{.retry = offload::retry_policy{.max_attempts = 2, .base_delay = 1ms},
                            .name = "flaky"},
      [&] {
        if (runs.fetch_add(1) < 2)
          throw std::runtime_error("both attempts of the first run fail");
        return 42;
      });
  eventually([&] {
    return store.find(id)->state() == offload::task_state::failed;
  });
  eventually([&] {
    return !ex.dead_letters().empty();
  });
  const std::vector<offload::dead_letter> dead = ex.dead_letters();
  ASSERT_EQ(dead.size(), 1u);
  ASSERT_TRUE(dead[0].requeueable());
  ASSERT_TRUE(ex.requeue(dead[0]));
  eventually([&] {
    return store.find(id)->state() == offload::task_state::succeeded;
  });
  EXPECT_EQ(store.find(id)->value(), 42);
  EXPECT_EQ(store.find(id)->attempts(), 1u) << "the requeued run starts its attempts again";
  EXPECT_EQ(runs.load(), 3);
}

TEST(ResultStore, ManyThreadsSubmitAndFindAtOnce) {
  offload::executor ex{{.workers = 2}};
  offload::result_store<int> store{ex, {.keep_for = 1h, .max_entries = 1'000'000}};
  std::vector<std::thread> threads;
  std::atomic<int> found{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      std::vector<std::string> mine;
      for (int i = 0; i < 2000; ++i) {
        mine.push_back(store.submit([i, t] {
          return i + t;
        }));
        if (store.find(mine[static_cast<std::size_t>(i) / 2]))
          found.fetch_add(1, std::memory_order_relaxed);
      }
    });
  for (auto& th : threads) th.join();
  ex.wait_idle();
  EXPECT_EQ(found.load(), 8000);
  EXPECT_EQ(store.size(), 8000u);
}

}  // namespace
