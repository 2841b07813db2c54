#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <thread>

#include <gtest/gtest.h>

#include <offload/offload.hpp>

namespace {

int fib(offload::executor& ex, int n) {
  if (n < 2)
    return n;
  int a = 0;
  offload::task_group g{ex};
  g.run([&] {
    a = fib(ex, n - 1);
  });
  const int b = fib(ex, n - 2);
  g.wait();
  return a + b;
}

class TaskGroup : public ::testing::TestWithParam<unsigned> {};

TEST_P(TaskGroup, RecursiveFibonacci) {
  offload::executor ex{{.workers = GetParam()}};
  EXPECT_EQ(ex.submit([&] {
                return fib(ex, 22);
              }).get(),
            17711);
}

TEST_P(TaskGroup, WaitFromOutsideThePool) {
  offload::executor ex{{.workers = GetParam()}};
  std::atomic<int> n{0};
  offload::task_group g{ex};
  for (int i = 0; i < 1000; ++i)
    g.run([&] {
      n.fetch_add(1);
    });
  g.wait();
  EXPECT_EQ(n.load(), 1000);
  // Reusable after wait().
  for (int i = 0; i < 10; ++i)
    g.run([&] {
      n.fetch_add(1);
    });
  g.wait();
  EXPECT_EQ(n.load(), 1010);
}

TEST_P(TaskGroup, FirstExceptionIsRethrownOnce) {
  offload::executor ex{{.workers = GetParam()}};
  offload::task_group g{ex};
  for (int i = 0; i < 10; ++i)
    g.run([] {
      throw std::runtime_error("x");
    });
  EXPECT_THROW(g.wait(), std::runtime_error);
  g.wait();  // the exception was consumed
}

TEST_P(TaskGroup, DestructorWaits) {
  offload::executor ex{{.workers = GetParam()}};
  std::atomic<int> n{0};
  {
    offload::task_group g{ex};
    for (int i = 0; i < 100; ++i)
      g.run([&] {
        n.fetch_add(1);
      });
  }
  EXPECT_EQ(n.load(), 100);
}

TEST_P(TaskGroup, RunAfterShutdownIsRejectedAndWaitDoesNotHang) {
  offload::executor ex{{.workers = GetParam()}};
  ex.shutdown();
  offload::task_group g{ex};
  EXPECT_THROW(g.run([] {}), offload::rejected);
  g.wait();
}

INSTANTIATE_TEST_SUITE_P(Workers, TaskGroup, ::testing::Values(1u, 2u, 4u));

}  // namespace

namespace {

TEST(TaskGroupCaptures, AreDestroyedBeforeWaitReturns) {
  offload::executor ex{{.workers = 2}};
  for (int i = 0; i < 1000; ++i) {
    auto token = std::make_shared<int>(0);
    std::weak_ptr<int> watch = token;
    offload::task_group g{ex};
    g.run([t = std::move(token)] {
      (void)t;
    });
    g.wait();
    EXPECT_TRUE(watch.expired()) << "a task's capture outlived task_group::wait()";
  }
}

}  // namespace

// Children spawned inside the pool onto a deque that already holds work wake nobody themselves;
// a thief that leaves work behind passes the wake-up on. Three children that can only finish
// together (each waits for the other two to start) therefore all get a worker: the parent runs
// the last one itself in wait(), and the two others must be taken by two other workers.
TEST(TaskGroupWakeUps, ChildrenLeftBehindByAThiefGetAWorker) {
  for (const bool fibers : {true, false}) {
    offload::executor ex{{.workers = 4, .fibers = fibers}};
    std::atomic<int> started{0};
    std::atomic<int> timed_out{0};
    ex.submit([&] {
        // Let the other workers finish spinning and park: each child must then be woken for.
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        offload::task_group g(ex);
        for (int i = 0; i < 3; ++i) {
          g.run([&] {
            started.fetch_add(1);
            // Bounded, so that a lost wake-up fails the test instead of hanging it.
            const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
            while (started.load() < 3 && std::chrono::steady_clock::now() < give_up)
              std::this_thread::yield();
            if (started.load() < 3)
              timed_out.fetch_add(1);
          });
        }
        g.wait();
      }).get();
    EXPECT_EQ(started.load(), 3) << "fibers " << fibers;
    EXPECT_EQ(timed_out.load(), 0) << "fibers " << fibers;
  }
}
