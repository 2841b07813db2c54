// One test per guarantee of docs/guarantees.md (numbering as in design.md).

#include <atomic>
#include <ctime>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "unit/test_support.hpp"
#include <gtest/gtest.h>

#include <offload/offload.hpp>

namespace {

using namespace std::chrono_literals;

// G1: every accepted task runs exactly once, or its future is resolved with a reason — also when
// shutdown(cancel) races with submissions from several threads.
TEST(Guarantee, G1_EveryAcceptedTaskRunsOrIsResolved) {
  for (int round = 0; round < 20; ++round) {
    offload::executor ex{{.workers = 2}};
    constexpr int k_producers = 3;
    constexpr int k_per_producer = 2000;
    std::vector<std::atomic<int>> runs(k_producers * k_per_producer);
    std::vector<std::vector<std::pair<int, offload::future<int>>>> accepted(k_producers);
    std::atomic<int> rejected{0};
    std::vector<std::thread> producers;
    for (int p = 0; p < k_producers; ++p) {
      producers.emplace_back([&, p] {
        for (int i = 0; i < k_per_producer; ++i) {
          const int id = p * k_per_producer + i;
          try {
            accepted[static_cast<std::size_t>(p)].emplace_back(id, ex.submit([&runs, id] {
              runs[static_cast<std::size_t>(id)].fetch_add(1);
              return id;
            }));
          } catch (const offload::rejected&) {
            rejected.fetch_add(1);
          }
        }
      });
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200 * (round % 5)));
    ex.shutdown(round % 2 == 0 ? offload::shutdown_mode::cancel : offload::shutdown_mode::drain);
    for (auto& t : producers) t.join();
    int resolved = 0;
    for (auto& list : accepted) {
      for (auto& [id, f] : list) {
        try {
          EXPECT_EQ(f.get(), id);
          EXPECT_EQ(runs[static_cast<std::size_t>(id)].load(), 1) << "ran more or less than once";
        } catch (const offload::cancelled&) {
          EXPECT_EQ(runs[static_cast<std::size_t>(id)].load(), 0) << "cancelled but ran";
        }
        ++resolved;
      }
    }
    EXPECT_EQ(resolved + rejected.load(), k_producers * k_per_producer);
  }
}

// G2: a task's exception never terminates the process; it reaches the future or is counted.
TEST(Guarantee, G2_TaskExceptionNeverTerminates) {
  std::atomic<int> seen{0};
  offload::executor ex{{.workers = 2, .on_task_error = [&](std::exception_ptr) {
                          seen.fetch_add(1);
                          throw std::runtime_error("a throwing handler is survived too");
                        }}};
  EXPECT_THROW(ex.submit([]() -> int {
                   throw std::logic_error("f");
                 }).get(),
               std::logic_error);
  ex.post([] {
    throw 42;
  });  // not even a std::exception
  ex.post([] {
    throw std::runtime_error("r");
  });
  ex.wait_idle();
  EXPECT_EQ(seen.load(), 2);
  EXPECT_EQ(ex.stats().failed_detached, 2u);
  EXPECT_EQ(ex.submit([] {
                return 1;
              }).get(),
            1);  // the pool is still healthy
}

// G3: waiting inside a worker never deadlocks, even with one worker: nested futures, nested task
// groups, and a promise fulfilled by a task queued after the waiter.
TEST(Guarantee, G3_WaitingInsideAWorkerNeverDeadlocks) {
  offload::executor ex{{.workers = 1}};
  std::function<int(int)> chain = [&](int depth) -> int {
    if (depth == 0)
      return 0;
    return ex.submit(chain, depth - 1).get() + 1;
  };
  EXPECT_EQ(ex.submit(chain, 100).get(), 100);

  auto nested = ex.submit([&] {
    offload::task_group outer{ex};
    std::atomic<int> n{0};
    for (int i = 0; i < 10; ++i) {
      outer.run([&] {
        offload::task_group inner{ex};
        for (int j = 0; j < 10; ++j)
          inner.run([&] {
            n.fetch_add(1);
          });
        inner.wait();
      });
    }
    outer.wait();
    return n.load();
  });
  EXPECT_EQ(nested.get(), 100);

  offload::promise<int> p;
  auto pf = p.get_future();
  auto waiter = ex.submit([&] {
    return pf.get();
  });  // queued first, waits
  ex.post([&] {
    p.set_value(7);
  });  // queued second, fulfils
  EXPECT_EQ(waiter.get(), 7);
}

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// G4: idle workers stop using CPU once the spin budget has passed: they park, stay parked, and
// the process burns (almost) no CPU while idle.
TEST(Guarantee, G4_IdleWorkersStopUsingCpu) {
  offload::executor ex{{.workers = 2, .spin_before_park = 1ms}};
  for (int i = 0; i < 100; ++i) ex.submit([] {}).get();
  std::this_thread::sleep_for(50ms);  // well past the spin budget
  const auto parks_before = ex.stats().parks;
  EXPECT_GE(parks_before, 2u);
  const double cpu_before = process_cpu_seconds();
  std::this_thread::sleep_for(300ms);
  const double cpu_used = process_cpu_seconds() - cpu_before;
  EXPECT_EQ(ex.stats().parks, parks_before) << "a parked worker woke up with no work";
  // 2% of one core over 300 ms is 6 ms; sleeping threads use microseconds.
  EXPECT_LT(cpu_used, 0.006) << "idle pool used " << cpu_used * 1000 << " ms of CPU in 300 ms";
}

// G6: submissions after shutdown get offload::rejected, never undefined behaviour.
TEST(Guarantee, G6_SubmitAfterShutdownIsRejected) {
  offload::executor ex{{.workers = 2}};
  ex.shutdown();
  EXPECT_THROW(ex.submit([] {
    return 1;
  }),
               offload::rejected);
  EXPECT_THROW(ex.post([] {}), offload::rejected);
  try {
    ex.post([] {});
  } catch (const offload::error& e) {  // rejected derives from offload::error
    EXPECT_NE(std::string(e.what()).find("shut down"), std::string::npos);
  }
}

// G7: invalid configuration fails at construction with a message that says what is wrong.
TEST(Guarantee, G7_InvalidConfigurationFailsAtConstruction) {
  try {
    offload::executor ex{{.workers = 5000}};
    FAIL() << "accepted 5000 workers";
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("executor_options.workers"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[0, 4096]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("5000"), std::string::npos) << msg;
  }
  EXPECT_THROW(offload::executor({.workers = 1, .spin_before_park = std::chrono::seconds(2)}),
               std::invalid_argument);
}

}  // namespace
