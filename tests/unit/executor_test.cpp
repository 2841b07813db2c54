#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "unit/test_support.hpp"
#include <gtest/gtest.h>

#include <offload/offload.hpp>

namespace {

using namespace std::chrono_literals;

class Executor : public ::testing::TestWithParam<unsigned> {
 protected:
  offload::executor_options options() const { return {.workers = GetParam()}; }
};

TEST_P(Executor, SubmitReturnsTheResult) {
  offload::executor ex{options()};
  EXPECT_EQ(ex.submit([] {
                return 42;
              }).get(),
            42);
  EXPECT_EQ(ex.worker_count(), GetParam());
}

TEST_P(Executor, SubmitPassesArguments) {
  offload::executor ex{options()};
  EXPECT_EQ(ex.submit(
                  [](int a, int b) {
                    return a + b;
                  },
                  1,
                  2)
                .get(),
            3);
  auto p = std::make_unique<int>(5);
  EXPECT_EQ(ex.submit(
                  [](std::unique_ptr<int> q) {
                    return *q * 2;
                  },
                  std::move(p))
                .get(),
            10);
  EXPECT_EQ(ex.submit(
                  [](const std::string& s) {
                    return s + "!";
                  },
                  std::string("hi"))
                .get(),
            "hi!");
}

TEST_P(Executor, MoveOnlyResultsAndVoid) {
  offload::executor ex{options()};
  auto f = ex.submit([] {
    return std::make_unique<int>(9);
  });
  EXPECT_EQ(*f.get(), 9);
  std::atomic<bool> ran{false};
  ex.submit([&] {
      ran = true;
    }).get();
  EXPECT_TRUE(ran.load());
}

struct custom_error : std::runtime_error {
  explicit custom_error(int c) : std::runtime_error("custom"), code(c) {}
  int code;
};

TEST_P(Executor, ExceptionReachesTheFutureUnchanged) {
  offload::executor ex{options()};
  auto f = ex.submit([]() -> int {
    throw custom_error(17);
  });
  try {
    f.get();
    FAIL() << "expected custom_error";
  } catch (const custom_error& e) {
    EXPECT_EQ(e.code, 17);
    EXPECT_STREQ(e.what(), "custom");
  }
}

TEST_P(Executor, PostRunsEveryTask) {
  offload::executor ex{options()};
  std::atomic<int> n{0};
  for (int i = 0; i < 10'000; ++i)
    ex.post([&] {
      n.fetch_add(1, std::memory_order_relaxed);
    });
  ex.wait_idle();
  EXPECT_EQ(n.load(), 10'000);
  const auto s = ex.stats();
  EXPECT_EQ(s.submitted, s.completed);
  EXPECT_GE(s.submitted, 10'000u);
}

TEST_P(Executor, PostedExceptionIsCountedAndHandled) {
  std::atomic<int> handled{0};
  offload::executor ex{
      offload::executor_options{.workers = GetParam(), .on_task_error = [&](std::exception_ptr e) {
                                  try {
                                    std::rethrow_exception(e);
                                  } catch (const custom_error& c) {
                                    handled.fetch_add(c.code);
                                  }
                                }}};
  for (int i = 0; i < 10; ++i)
    ex.post([] {
      throw custom_error(1);
    });
  ex.wait_idle();
  EXPECT_EQ(handled.load(), 10);
  EXPECT_EQ(ex.stats().failed_detached, 10u);
}

TEST_P(Executor, TasksSpawnedInsideWorkersRun) {
  offload::executor ex{options()};
  std::atomic<int> n{0};
  ex.submit([&] {
      for (int i = 0; i < 1000; ++i)
        ex.post([&] {
          n.fetch_add(1);
        });
    }).get();
  ex.wait_idle();
  EXPECT_EQ(n.load(), 1000);
}

TEST_P(Executor, WaitIdleOnIdlePoolReturns) {
  offload::executor ex{options()};
  ex.wait_idle();
  ex.wait_idle();
}

TEST_P(Executor, WaitIdleFromATaskIsAnError) {
  offload::executor ex{options()};
  auto f = ex.submit([&] {
    ex.wait_idle();
  });
  EXPECT_THROW(f.get(), std::logic_error);
}

TEST_P(Executor, ShutdownDrainRunsEverythingAccepted) {
  std::atomic<int> n{0};
  {
    offload::executor ex{options()};
    for (int i = 0; i < 5000; ++i)
      ex.post([&] {
        n.fetch_add(1);
      });
    ex.shutdown(offload::shutdown_mode::drain);
    EXPECT_EQ(n.load(), 5000);
    ex.shutdown();  // idempotent
  }
  EXPECT_EQ(n.load(), 5000);
}

TEST_P(Executor, DestructorDrains) {
  std::atomic<int> n{0};
  {
    offload::executor ex{options()};
    for (int i = 0; i < 5000; ++i)
      ex.post([&] {
        n.fetch_add(1);
      });
  }
  EXPECT_EQ(n.load(), 5000);
}

TEST_P(Executor, ShutdownCancelResolvesQueuedFutures) {
  offload::executor ex{options()};
  offload_test::gate g;
  std::atomic<int> started{0};
  std::vector<offload::future<void>> blockers;
  for (unsigned i = 0; i < GetParam(); ++i) {
    blockers.push_back(ex.submit([&] {
      started.fetch_add(1);
      g.wait();
    }));
  }
  offload_test::eventually([&] {
    return started.load() == static_cast<int>(GetParam());
  });
  std::atomic<int> ran{0};
  std::vector<offload::future<int>> queued;
  for (int i = 0; i < 100; ++i)
    queued.push_back(ex.submit([&] {
      return ran.fetch_add(1);
    }));
  std::thread stopper([&] {
    ex.shutdown(offload::shutdown_mode::cancel);
  });
  std::this_thread::sleep_for(10ms);
  g.open();
  stopper.join();
  for (auto& b : blockers) b.get();  // running tasks finish normally
  for (auto& f : queued) EXPECT_THROW(f.get(), offload::cancelled);
  EXPECT_EQ(ran.load(), 0);
}

TEST_P(Executor, ContinuationsRunOnTheExecutor) {
  offload::executor ex{options()};
  auto f = ex.submit([] {
               return 20;
             })
               .then([](int x) {
                 return x * 2;
               })
               .then([](int x) {
                 return std::to_string(x + 2);
               });
  EXPECT_EQ(f.get(), "42");
}

INSTANTIATE_TEST_SUITE_P(Workers, Executor, ::testing::Values(1u, 2u, 4u));

TEST(ExecutorDefaults, OneWorkerPerHardwareThread) {
  offload::executor ex;
  const unsigned hw = std::thread::hardware_concurrency();
  EXPECT_EQ(ex.worker_count(), hw == 0 ? 1u : hw);
}

TEST(ExecutorOptions, InvalidOptionsNameTheField) {
  auto message_of = [](offload::executor_options o) -> std::string {
    try {
      offload::executor ex{std::move(o)};
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(message_of({.workers = 100'000}).find("workers"), std::string::npos);
  EXPECT_NE(message_of({.workers = 1, .spin_before_park = -1ns}).find("spin_before_park"),
            std::string::npos);
  EXPECT_NE(message_of({.workers = 1, .deque_capacity = 0}).find("deque_capacity"),
            std::string::npos);
}

}  // namespace
