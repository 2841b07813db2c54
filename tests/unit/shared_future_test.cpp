// offload::shared_future: many readers of one result.
#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <offload/offload.hpp>

namespace {

using namespace std::chrono_literals;

TEST(SharedFuture, CopiesReadTheSameValueWithoutConsumingIt) {
  offload::executor ex{{.workers = 2}};
  offload::future<std::string> f = ex.submit([] {
    return std::string("the result");
  });
  offload::shared_future<std::string> s = f.share();
  EXPECT_FALSE(f.valid());
  ASSERT_TRUE(s.valid());
  const offload::shared_future<std::string> copy = s;
  EXPECT_EQ(&s.get(), &copy.get()) << "one value, read in place";
  EXPECT_EQ(s.get(), "the result");
  EXPECT_EQ(s.get(), "the result");  // again
  EXPECT_TRUE(copy.is_ready());
  EXPECT_EQ(copy.state(), offload::task_state::succeeded);
  EXPECT_EQ(copy.wait_for(0ms), std::future_status::ready);
}

TEST(SharedFuture, EveryCopyRethrowsTheException) {
  offload::executor ex{{.workers = 2}};
  offload::shared_future<int> s = ex.submit([]() -> int {
                                      throw std::runtime_error("boom");
                                    }).share();
  const auto copy = s;
  EXPECT_THROW(s.get(), std::runtime_error);
  EXPECT_THROW(copy.get(), std::runtime_error);
  EXPECT_EQ(copy.state(), offload::task_state::failed);
}

TEST(SharedFuture, ManyTasksWaitOnCopiesWithoutHoldingTheirWorkers) {
  // 2 workers, 5000 waiting tasks: each wait suspends its task's fiber, so the producer, queued
  // last, still gets a worker.
  offload::executor ex{{.workers = 2}};
  offload::promise<int> gate;
  offload::shared_future<int> s = gate.get_future().share();
  std::atomic<long> sum{0};
  std::vector<offload::future<void>> waiters;
  waiters.reserve(5000);
  for (int i = 0; i < 5000; ++i)
    waiters.push_back(ex.submit([s, &sum] {
      sum.fetch_add(s.get(), std::memory_order_relaxed);
    }));
  auto producer = ex.submit([&gate] {
    gate.set_value(3);
  });
  producer.get();
  for (auto& w : waiters) w.get();
  EXPECT_EQ(sum.load(), 15000);
}

TEST(SharedFuture, ThreadsWaitOnCopiesAtOnce) {
  offload::executor ex{{.workers = 1}};
  offload::promise<int> gate;
  offload::shared_future<int> s = gate.get_future().share();
  std::atomic<int> done{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i)
    threads.emplace_back([s, &done] {  // each thread its own copy
      if (s.get() == 42)
        done.fetch_add(1);
    });
  std::this_thread::sleep_for(5ms);
  EXPECT_EQ(s.wait_for(0ms), std::future_status::timeout);
  gate.set_value(42);
  for (auto& t : threads) t.join();
  EXPECT_EQ(done.load(), 8);
}

TEST(SharedFuture, ThenRunsOnEveryCopyAndKeepsTheValue) {
  offload::executor ex{{.workers = 2}};
  offload::shared_future<int> s = ex.submit([] {
                                      return 20;
                                    }).share();
  auto a = s.then([](const int& v) {
    return v + 1;
  });
  auto b = s.then([](const int& v) {
    return v * 2;
  });
  EXPECT_EQ(a.get(), 21);
  EXPECT_EQ(b.get(), 40);
  EXPECT_EQ(s.get(), 20);  // still there
  offload::shared_future<void> v = ex.submit([] {}).share();
  v.get();
  EXPECT_EQ(v.then([] {
               return 7;
             }).get(),
            7);
  offload::shared_future<int> failed = ex.submit([]() -> int {
                                           throw std::logic_error("no");
                                         }).share();
  EXPECT_THROW(failed
                   .then([](const int&) {
                     return 0;
                   })
                   .get(),
               std::logic_error);
}

TEST(SharedFuture, TheValueLivesUntilTheLastCopyIsGone) {
  auto token = std::make_shared<int>(1);
  std::weak_ptr<int> watch = token;
  std::unique_ptr<offload::shared_future<std::shared_ptr<int>>> s;
  {
    offload::promise<std::shared_ptr<int>> p;  // a promise: no task holds the state afterwards
    s = std::make_unique<offload::shared_future<std::shared_ptr<int>>>(p.get_future().share());
    p.set_value(std::move(token));
  }
  auto copy = *s;
  s.reset();
  EXPECT_FALSE(watch.expired());
  EXPECT_EQ(*copy.get(), 1);
  copy = {};
  EXPECT_TRUE(watch.expired());
  EXPECT_FALSE(copy.valid());
  EXPECT_THROW(copy.get(), std::future_error);
}

}  // namespace
