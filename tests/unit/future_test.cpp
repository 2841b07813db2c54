#include <atomic>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "unit/test_support.hpp"
#include <gtest/gtest.h>

#include <offload/offload.hpp>

namespace {

using namespace std::chrono_literals;

TEST(Future, DefaultIsInvalid) {
  offload::future<int> f;
  EXPECT_FALSE(f.valid());
  EXPECT_THROW(f.get(), std::future_error);
}

TEST(Future, GetInvalidatesAndIsReadyReports) {
  offload::executor ex{{.workers = 1}};
  auto f = ex.submit([] {
    return 1;
  });
  f.wait();
  EXPECT_TRUE(f.is_ready());
  EXPECT_EQ(f.get(), 1);
  EXPECT_FALSE(f.valid());
}

TEST(Future, WaitForTimesOutThenSucceeds) {
  offload::executor ex{{.workers = 1}};
  offload_test::gate g;
  auto f = ex.submit([&] {
    g.wait();
    return 3;
  });
  EXPECT_EQ(f.wait_for(5ms), std::future_status::timeout);
  g.open();
  EXPECT_EQ(f.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(f.get(), 3);
}

TEST(Future, CancelledQueuedTaskNeverRuns) {
  offload::executor ex{{.workers = 1}};
  offload_test::gate g;
  auto blocker = ex.submit([&] {
    g.wait();
  });
  std::atomic<bool> ran{false};
  auto f = ex.submit([&] {
    ran = true;
  });
  EXPECT_TRUE(f.cancel());
  EXPECT_FALSE(f.cancel());  // already cancelled
  g.open();
  blocker.get();
  ex.wait_idle();
  EXPECT_FALSE(ran.load());
  EXPECT_THROW(f.get(), offload::cancelled);
}

TEST(Future, CancelOfARunningTaskHasNoEffect) {
  offload::executor ex{{.workers = 1}};
  offload_test::gate g;
  std::atomic<bool> started{false};
  auto f = ex.submit([&] {
    started = true;
    g.wait();
    return 5;
  });
  offload_test::eventually([&] {
    return started.load();
  });
  EXPECT_FALSE(f.cancel());
  g.open();
  EXPECT_EQ(f.get(), 5);
}

TEST(Future, ThenSkipsFunctionOnFailureAndForwardsTheException) {
  offload::executor ex{{.workers = 2}};
  std::atomic<bool> called{false};
  auto f = ex.submit([]() -> int {
               throw std::out_of_range("boom");
             }).then([&](int x) {
    called = true;
    return x;
  });
  EXPECT_THROW(f.get(), std::out_of_range);
  EXPECT_FALSE(called.load());
}

TEST(Future, ThenOnVoidAndOnReadyFuture) {
  offload::executor ex{{.workers = 2}};
  auto f = ex.submit([] {});
  f.wait();
  EXPECT_EQ(f.then([] {
               return 7;
             }).get(),
            7);
}

TEST(Future, ThenAfterShutdownIsRejected) {
  offload::executor ex{{.workers = 1}};
  auto f = ex.submit([] {
    return 1;
  });
  f.wait();
  ex.shutdown();
  auto g = f.then([](int x) {
    return x;
  });
  EXPECT_THROW(g.get(), offload::rejected);
}

TEST(Promise, SetValueFromAnotherThread) {
  offload::promise<std::string> p;
  auto f = p.get_future();
  EXPECT_THROW(p.get_future(), std::future_error);
  std::thread t([&] {
    p.set_value("done");
  });
  EXPECT_EQ(f.get(), "done");
  t.join();
}

TEST(Promise, BrokenPromise) {
  offload::future<int> f;
  {
    offload::promise<int> p;
    f = p.get_future();
  }
  try {
    f.get();
    FAIL();
  } catch (const std::future_error& e) {
    EXPECT_EQ(e.code(), std::future_errc::broken_promise);
  }
}

TEST(Promise, SetTwiceThrowsAndSetAfterCancelIsIgnored) {
  offload::promise<int> p;
  auto f = p.get_future();
  p.set_value(1);
  EXPECT_THROW(p.set_value(2), std::future_error);
  offload::promise<int> q;
  auto g = q.get_future();
  EXPECT_TRUE(g.cancel());
  q.set_value(3);  // the consumer gave up: no error
  EXPECT_THROW(g.get(), offload::cancelled);
}

TEST(Promise, ContinuationRunsInlineWithoutExecutor) {
  offload::promise<int> p;
  auto f = p.get_future().then([](int x) {
    return x + 1;
  });
  p.set_value(1);
  EXPECT_EQ(f.get(), 2);
}

TEST(WhenAll, TupleOfMixedTypes) {
  offload::executor ex{{.workers = 2}};
  auto all = offload::when_all(ex.submit([] {
    return 1;
  }),
                               ex.submit([] {
                                 return std::string("a");
                               }),
                               ex.submit([] {}));
  auto t = all.get();
  EXPECT_EQ(std::get<0>(t).get(), 1);
  EXPECT_EQ(std::get<1>(t).get(), "a");
  std::get<2>(t).get();
}

TEST(WhenAll, VectorKeepsPerElementExceptions) {
  offload::executor ex{{.workers = 2}};
  std::vector<offload::future<int>> fs;
  for (int i = 0; i < 100; ++i) {
    fs.push_back(ex.submit([i] {
      if (i == 50)
        throw std::runtime_error("fifty");
      return i;
    }));
  }
  auto done = offload::when_all(std::move(fs)).get();
  ASSERT_EQ(done.size(), 100u);
  for (int i = 0; i < 100; ++i) {
    if (i == 50) {
      EXPECT_THROW(done[50].get(), std::runtime_error);
    } else {
      EXPECT_EQ(done[static_cast<std::size_t>(i)].get(), i);
    }
  }
  EXPECT_TRUE(offload::when_all(std::vector<offload::future<int>>{}).get().empty());
}

TEST(WhenAny, ReportsTheFirstReady) {
  offload::executor ex{{.workers = 2}};
  offload_test::gate g;
  auto slow = ex.submit([&] {
    g.wait();
    return 1;
  });
  auto fast = ex.submit([] {
    return 2;
  });
  auto r = offload::when_any(std::move(slow), std::move(fast)).get();
  EXPECT_EQ(r.index, 1u);
  EXPECT_EQ(std::get<1>(r.futures).get(), 2);
  g.open();
  EXPECT_EQ(std::get<0>(r.futures).get(), 1);
}

TEST(WhenAny, VectorWithReadyInputs) {
  std::vector<offload::future<int>> fs;
  std::vector<offload::promise<int>> ps(3);
  for (auto& p : ps) fs.push_back(p.get_future());
  ps[2].set_value(9);
  auto r = offload::when_any(std::move(fs)).get();
  EXPECT_EQ(r.index, 2u);
  EXPECT_EQ(r.futures[2].get(), 9);
  ps[0].set_value(0);
  ps[1].set_value(1);
}

// Inside a worker, get() helps: with one worker, a task waiting on a task it submitted completes.
TEST(Future, GetInsideTheOnlyWorkerHelps) {
  offload::executor ex{{.workers = 1}};
  auto outer = ex.submit([&] {
    auto inner = ex.submit([] {
      return 20;
    });
    return inner.get() + 1;
  });
  EXPECT_EQ(outer.get(), 21);
}

}  // namespace

namespace {

// Sets a flag when destroyed (the last copy only).
struct destruction_flag {
  std::shared_ptr<std::atomic<bool>> flag;
  ~destruction_flag() {
    if (flag && flag.use_count() == 1)
      flag->store(true);
  }
};

TEST(Future, CapturesAreDestroyedBeforeGetReturns) {
  offload::executor ex{{.workers = 2}};
  for (int i = 0; i < 1000; ++i) {
    auto destroyed = std::make_shared<std::atomic<bool>>(false);
    auto f = ex.submit([d = destruction_flag{destroyed}] {
      return 1;
    });
    std::weak_ptr<std::atomic<bool>> watch = destroyed;
    destroyed.reset();
    f.get();
    EXPECT_TRUE(watch.expired()) << "the task's capture outlived get()";
  }
}

TEST(Promise, SetRacingWithCancelNeverThrows) {
  for (int i = 0; i < 5000; ++i) {
    offload::promise<int> p;
    auto f = p.get_future();
    std::thread canceller([&] {
      f.cancel();
    });
    EXPECT_NO_THROW(p.set_value(1));
    canceller.join();
  }
}

}  // namespace
