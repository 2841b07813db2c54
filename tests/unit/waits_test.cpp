// Waiting inside a worker never deadlocks and never overflows a stack: any number of waiters on
// every waitable, waits whose awaited work sleeps on the same worker, and workers ending with
// many idle fibers (TSan: their stacks are unwound, not returned from).

#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "unit/test_support.hpp"
#include <gtest/gtest.h>
#include <pthread.h>

#include <offload/offload.hpp>

namespace {

using namespace std::chrono_literals;

/// Every future is ready within `bound` (a hang fails the test instead of timing it out).
template <class T>
void expect_all_ready(std::vector<offload::future<T>>& fs, std::chrono::seconds bound = 10s) {
  for (auto& f : fs) ASSERT_EQ(f.wait_for(bound), std::future_status::ready) << "a waiter hung";
}

// Item 1 of the defects issue: two tasks on one worker wait on a group whose child sleeps.
TEST(Waits, TwoWaitersOnOneGroupWithASleepingChild) {
  offload::executor ex{{.workers = 1}};
  offload::task_group group{ex};
  std::atomic<bool> child_done{false};
  group.run([&] {
    offload::this_task::sleep_for(20ms);
    child_done = true;
  });
  std::vector<offload::future<bool>> waiters;
  for (int i = 0; i < 2; ++i) {
    waiters.push_back(ex.submit([&] {
      group.wait();
      return child_done.load();
    }));
  }
  expect_all_ready(waiters);
  for (auto& f : waiters) EXPECT_TRUE(f.get());
  group.wait();
}

TEST(Waits, FourWaitersOnOneGroupOnTwoWorkersForTwentyRounds) {
  offload::executor ex{{.workers = 2}};
  for (int round = 0; round < 20; ++round) {
    offload::task_group group{ex};
    std::atomic<int> done{0};
    for (int c = 0; c < 3; ++c) {
      group.run([&] {
        offload::this_task::sleep_for(2ms);
        done.fetch_add(1);
      });
    }
    std::vector<offload::future<int>> waiters;
    for (int i = 0; i < 4; ++i) {
      waiters.push_back(ex.submit([&] {
        group.wait();
        return done.load();
      }));
    }
    expect_all_ready(waiters);
    for (auto& f : waiters) EXPECT_EQ(f.get(), 3);
    group.wait();
  }
}

// Many waiters at once on each kind of waitable, on one worker, while the work they wait for
// sleeps on that same worker.
TEST(Waits, ManyWaitersOnEveryWaitableOnOneWorker) {
  offload::executor ex{{.workers = 1}};
  constexpr int k_waiters = 50;
  std::vector<offload::future<int>> all;

  offload::task_group group{ex};
  group.run([] {
    offload::this_task::sleep_for(5ms);
  });
  for (int i = 0; i < k_waiters; ++i) {
    all.push_back(ex.submit([&group] {
      group.wait();
      return 1;
    }));
  }

  offload::manual_reset_event event;
  for (int i = 0; i < k_waiters; ++i) {
    all.push_back(ex.submit([&event] {
      event.wait();
      return 1;
    }));
  }
  ex.post([&event] {
    offload::this_task::sleep_for(5ms);
    event.set();
  });

  offload::task_mutex mutex;
  std::atomic<int> inside{0};
  for (int i = 0; i < k_waiters; ++i) {
    all.push_back(ex.submit([&] {
      std::lock_guard lock(mutex);
      EXPECT_EQ(inside.fetch_add(1), 0);
      offload::this_task::sleep_for(100us);
      inside.fetch_sub(1);
      return 1;
    }));
  }

  // One task waits on a future whose producer sleeps on the same worker (a future has one
  // consumer; shared waits are the group's and the event's above).
  auto slow = ex.submit([] {
    offload::this_task::sleep_for(5ms);
    return 1;
  });
  all.push_back(ex.submit([s = std::move(slow)]() mutable {
    return s.get();
  }));

  expect_all_ready(all);
  int sum = 0;
  for (auto& f : all) sum += f.get();
  EXPECT_EQ(sum, 3 * k_waiters + 1);
  group.wait();
}

// The same, with fibers off: waits help run other work and still never hang.
TEST(Waits, ManyWaitersOnOneGroupWithFibersOff) {
  offload::executor ex{{.workers = 1, .fibers = false}};
  offload::task_group group{ex};
  group.run([] {
    std::this_thread::sleep_for(5ms);
  });
  std::vector<offload::future<int>> waiters;
  for (int i = 0; i < 20; ++i) {
    waiters.push_back(ex.submit([&group] {
      group.wait();
      return 1;
    }));
  }
  expect_all_ready(waiters);
  for (auto& f : waiters) EXPECT_EQ(f.get(), 1);
  group.wait();
}

// A thread outside the pool and tasks inside it wait on one group together.
TEST(Waits, ThreadsAndTasksWaitOnOneGroupTogether) {
  offload::executor ex{{.workers = 2}};
  for (int round = 0; round < 50; ++round) {
    offload::task_group group{ex};
    group.run([] {
      offload::this_task::sleep_for(200us);
    });
    std::vector<offload::future<void>> tasks;
    for (int i = 0; i < 3; ++i)
      tasks.push_back(ex.submit([&group] {
        group.wait();
      }));
    std::thread outside([&group] {
      group.wait();
    });
    group.wait();
    outside.join();
    expect_all_ready(tasks);
    for (auto& f : tasks) f.get();
  }
}

// Without stack room to help (fibers off, deep nesting of waits on one worker), a wait fails
// with offload::error instead of overflowing the thread's stack.
/// Threads started while it lives get `bytes` of stack by default (the executor's workers).
class default_thread_stack {
 public:
  explicit default_thread_stack(std::size_t bytes) {
    pthread_getattr_default_np(&m_saved);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, bytes);
    pthread_setattr_default_np(&attr);
    pthread_attr_destroy(&attr);
  }
  ~default_thread_stack() {
    pthread_setattr_default_np(&m_saved);
    pthread_attr_destroy(&m_saved);
  }
  default_thread_stack(const default_thread_stack&) = delete;
  default_thread_stack& operator=(const default_thread_stack&) = delete;

 private:
  pthread_attr_t m_saved;
};

TEST(Waits, NestedWaitsWithoutFibersFailCleanlyInsteadOfOverflowing) {
  // Far more nested waits than fit on the workers' 512 KiB stacks without the room check.
  // (Under the sanitizers, whose pthread_create refuses a changed default, the workers keep their
  // usual stacks: all the waits may then fit, and only their resolution is checked.)
  constexpr bool k_small_stacks = !OFFLOAD_TSAN && !OFFLOAD_ASAN;
  // Under the sanitizers each nested help is far slower, and fewer tasks check the same thing.
  constexpr int k_tasks = k_small_stacks ? 20000 : 5000;
  std::optional<default_thread_stack> small;
  if (k_small_stacks)
    small.emplace(std::size_t{512} << 10);
  offload::executor ex{{.workers = 1, .fibers = false}};
  // Each task waits on its own gate; with one worker and no fibers each wait helps by running the
  // next task nested, until the stack has no room left. The gates open from the last task.
  std::vector<offload::promise<void>> gates(k_tasks);
  std::vector<offload::future<void>> gate_futures;
  for (auto& g : gates) gate_futures.push_back(g.get_future());
  std::vector<offload::future<void>> waiters;
  for (int i = 0; i < k_tasks; ++i) {
    waiters.push_back(ex.submit([&gate_futures, i] {
      gate_futures[static_cast<std::size_t>(i)].wait();
    }));
  }
  ex.post([&gates] {
    for (auto& g : gates) g.set_value();
  });
  expect_all_ready(waiters, 60s);
  int ok = 0;
  int refused = 0;
  for (auto& f : waiters) {
    try {
      f.get();
      ++ok;
    } catch (const offload::error& e) {
      EXPECT_NE(std::string(e.what()).find("cannot wait"), std::string::npos) << e.what();
      ++refused;
    }
  }
  if (k_small_stacks) {
    EXPECT_GT(refused, 0) << "all nested waits fit on one stack: the test proves nothing";
  }
  EXPECT_GT(ok, 0);
  EXPECT_EQ(ok + refused, k_tasks);
}

// Workers that end with many idle fibers (up to the pool's limit of 16, and past it, where surplus
// fibers are destroyed while the worker runs) shut down cleanly. Under TSan, fibers that ended by
// returning from their entry function crashed TSan at thread exit.
TEST(Waits, WorkersEndWithManyIdleFibers) {
  for (int round = 0; round < 20; ++round) {
    const int sleepers = 5 + 3 * round;
    offload::executor ex{{.workers = 2}};
    std::vector<offload::future<int>> fs;
    for (int i = 0; i < sleepers; ++i) {
      fs.push_back(ex.submit([] {
        offload::this_task::sleep_for(1ms);
        return 1;
      }));
    }
    for (auto& f : fs) EXPECT_EQ(f.get(), 1);
  }
}

TEST(Waits, OneWorkerEndsWithEveryFiberItMade) {
  for (const int waiters : {5, 16, 40}) {
    offload::executor ex{{.workers = 1}};
    offload::manual_reset_event go;
    std::vector<offload::future<int>> fs;
    for (int i = 0; i < waiters; ++i) {
      fs.push_back(ex.submit([&go] {
        go.wait();
        return 1;
      }));
    }
    // Every task suspended, each on a fiber of its own.
    offload_test::eventually([&] {
      return ex.stats().suspended == std::uint64_t(waiters);
    });
    EXPECT_GT(ex.stats().fibers, std::uint64_t(waiters));
    go.set();
    for (auto& f : fs) EXPECT_EQ(f.get(), 1);
  }
}

}  // namespace
