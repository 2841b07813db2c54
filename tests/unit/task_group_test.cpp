#include <atomic>
#include <memory>
#include <stdexcept>

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
