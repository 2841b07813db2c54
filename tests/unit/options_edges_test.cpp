// Options at their edges: every enum field out of range is refused with an error naming it, lanes
// are inherited unless set, move-only results work with every policy option but a key, and
// arguments are taken as by std::async (std::ref included).
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

#include "unit/test_support.hpp"
#include <gtest/gtest.h>
#include <sched.h>

#include "offload/offload.hpp"

using namespace std::chrono_literals;
using offload::lane;
using offload::task_options;
using offload_test::expect_invalid;

namespace {

template <class E>
E bad(unsigned v) {
  return static_cast<E>(v);
}

}  // namespace

TEST(EnumFields, ALaneOutOfRangeIsRefusedOnEverySubmissionPath) {
  offload::executor ex{{.workers = 1}};
  for (unsigned v : {4u, 5u, 0x7fu, 0xfeu}) {
    const task_options o{.lane = bad<lane>(v)};
    expect_invalid(
        [&] {
          o.validate();
        },
        "task_options.lane");
    expect_invalid(
        [&] {
          (void)ex.submit(o, [] {
            return 1;
          });
        },
        "task_options.lane");
    expect_invalid(
        [&] {
          ex.post(o, [] {});
        },
        "task_options.lane");
    expect_invalid(
        [&] {
          (void)ex.schedule_every(1s, o, [] {});
        },
        "task_options.lane");
    expect_invalid(
        [&] {
          (void)ex.submit(task_options{.lane = bad<lane>(v), .delay = 1ms}, [] {
            return 1;
          });
        },
        "task_options.lane");
    expect_invalid(
        [&] {
          (void)ex.schedule(bad<lane>(v));
        },
        "not a lane");
  }
  ex.wait_idle();
  EXPECT_TRUE(offload_test::counters_reconcile(ex.metrics()));
  EXPECT_EQ(ex.stats().submitted, 0u);
}

TEST(EnumFields, RetryPolicyEnumsOutOfRangeAreRefused) {
  for (unsigned v : {3u, 4u, 255u, 0xffffffffu}) {
    expect_invalid(
        [&] {
          task_options{.retry = offload::retry_policy{.max_attempts = 2,
                                                      .backoff = bad<offload::backoff>(v)}}
              .validate();
        },
        "retry_policy.backoff");
    expect_invalid(
        [&] {
          task_options{
              .retry = offload::retry_policy{.max_attempts = 2, .jitter = bad<offload::jitter>(v)}}
              .validate();
        },
        "retry_policy.jitter");
  }
}

TEST(EnumFields, ExecutorOptionEnumsOutOfRangeAreRefused) {
  for (unsigned v : {3u, 4u, 255u, 0xffffffffu}) {
    expect_invalid(
        [&] {
          offload::executor ex{{.workers = 1, .placement = bad<offload::placement>(v)}};
        },
        "executor_options.placement");
    for (std::size_t l = 0; l < offload::k_lane_count; ++l) {
      offload::executor_options o{.workers = 1};
      o.lanes[l].capacity = 4;
      o.lanes[l].overflow = bad<offload::overflow_policy>(v);
      expect_invalid(
          [&] {
            offload::executor ex{o};
          },
          "lanes[" + std::string(to_string(static_cast<lane>(l))) + "].overflow");
    }
  }
}

TEST(EnumFields, AShutdownModeOutOfRangeIsRefused) {
  offload::executor ex{{.workers = 1}};
  expect_invalid(
      [&] {
        ex.shutdown(bad<offload::shutdown_mode>(2));
      },
      "shutdown");
  ex.post([] {});  // still running: the refused call changed nothing
  ex.shutdown();
}

TEST(EnumFields, LaneNamesCoverEveryValue) {
  EXPECT_EQ(to_string(lane::inherit), "inherit");
  EXPECT_EQ(to_string(bad<lane>(9)), "unknown");
  EXPECT_FALSE(offload::is_lane(lane::inherit));
  EXPECT_TRUE(offload::is_lane(lane::low));
}

TEST(DurationFields, EachIsAcceptedOrRefusedAtItsEdges) {
  using ns = std::chrono::nanoseconds;
  using dur = offload::clock::duration;
  // task_options.delay: >= 0, huge values saturate (accepted).
  task_options{.delay = dur::max()}.validate();
  expect_invalid(
      [] {
        task_options{.delay = dur::min()}.validate();
      },
      "task_options.delay");
  expect_invalid(
      [] {
        task_options{.delay = dur(-1)}.validate();
      },
      "task_options.delay");
  // retry delays: base in [0, max_delay], max_delay <= 365 days.
  task_options{.retry =
                   offload::retry_policy{.max_attempts = 2, .base_delay = 0ns, .max_delay = 0ns}}
      .validate();
  expect_invalid(
      [] {
        task_options{.retry = offload::retry_policy{.max_attempts = 2, .base_delay = dur(-1)}}
            .validate();
      },
      "retry_policy.base_delay");
  expect_invalid(
      [] {
        task_options{.retry =
                         offload::retry_policy{
                             .max_attempts = 2, .base_delay = dur::max(), .max_delay = dur::max()}}
            .validate();
      },
      "retry_policy.max_delay");
  expect_invalid(
      [] {
        task_options{.retry = offload::retry_policy{.max_attempts = 0}}.validate();
      },
      "retry_policy.max_attempts");
  expect_invalid(
      [] {
        task_options{.retry = offload::retry_policy{.max_attempts = 1'000'001}}.validate();
      },
      "retry_policy.max_attempts");
  // executor_options durations.
  expect_invalid(
      [] {
        offload::executor ex{{.workers = 1, .spin_before_park = ns(-1)}};
      },
      "spin_before_park");
  expect_invalid(
      [] {
        offload::executor ex{{.workers = 1, .spin_before_park = ns::max()}};
      },
      "spin_before_park");
  for (ns v : {ns(-1), ns::max(), ns::min()}) {
    offload::executor_options o{.workers = 1};
    o.lanes[0].block_timeout = v;
    expect_invalid(
        [&] {
          offload::executor ex{o};
        },
        "block_timeout");
    offload::executor_options s{.workers = 1};
    s.stuck_after = v;
    expect_invalid(
        [&] {
          offload::executor ex{s};
        },
        "stuck_after");
    offload::executor_options d{.workers = 1};
    d.dead_letters.max_age = std::chrono::duration_cast<std::chrono::seconds>(v);
    expect_invalid(
        [&] {
          offload::executor ex{d};
        },
        "dead_letters.max_age");
  }
  // Deadlines: any time point is accepted; one in the past expires the task.
  offload::executor ex{{.workers = 1}};
  auto late = ex.submit(task_options{.deadline = offload::clock::time_point::max()}, [] {
    return 1;
  });
  EXPECT_EQ(late.get(), 1);
  auto past = ex.submit(task_options{.deadline = offload::clock::time_point::min()}, [] {
    return 1;
  });
  EXPECT_THROW((void)past.get(), offload::expired);
  // A period must be > 0; the largest is accepted and never fires (timer_edges_test).
  expect_invalid(
      [&] {
        (void)ex.schedule_every(dur::zero(), {}, [] {});
      },
      "period");
  expect_invalid(
      [&] {
        (void)ex.schedule_every(dur::min(), {}, [] {});
      },
      "period");
}

// Options that do not set a lane inherit the submitting task's, as plain submissions do.
TEST(LaneInheritance, OptionsWithoutALaneKeepTheParentsLane) {
  offload::executor ex{{.workers = 2}};
  std::atomic<int> done{0};
  ex.post(task_options{.lane = lane::low}, [&] {
    ex.post(task_options{.name = "child"}, [&] {
      ++done;
    });
    (void)ex.submit(task_options{.name = "child"}, [&] {
      return ++done;
    });
    (void)ex.submit(task_options{.delay = 1ms}, [&] {
      return ++done;
    });
    (void)ex.submit(task_options{.retry = offload::retry_policy{.max_attempts = 2}}, [&] {
      return ++done;
    });
    ex.post(task_options{.lane = lane::high}, [&] {
      ++done;
    });  // set: its own lane
  });
  offload_test::eventually([&] {
    return done.load() == 5;
  });
  ex.wait_idle();
  const auto m = ex.metrics();
  EXPECT_EQ(m.lanes[index_of(lane::low)].submitted, 5u);
  EXPECT_EQ(m.lanes[index_of(lane::high)].submitted, 1u);
  EXPECT_EQ(m.lanes[index_of(lane::normal)].submitted, 0u);
  // Outside the pool, an unset lane is normal.
  ex.post(task_options{.name = "outside"}, [] {});
  ex.wait_idle();
  EXPECT_EQ(ex.metrics().lanes[index_of(lane::normal)].submitted, 1u);
}

// Only keys need a copyable result (every follower gets a copy); every other option works with
// a move-only result.
TEST(MoveOnlyResults, WorkWithRetryDelayDeadlineAndRate) {
  offload::executor ex{{.workers = 1}};
  std::atomic<int> tries{0};
  auto retried = ex.submit(
      task_options{.retry = offload::retry_policy{.max_attempts = 2, .base_delay = 1ms}}, [&] {
        if (tries.fetch_add(1) == 0)
          throw std::runtime_error("once");
        return std::make_unique<int>(1);
      });
  auto delayed = ex.submit(task_options{.delay = 1ms}, [] {
    return std::make_unique<int>(2);
  });
  auto timed = ex.submit(task_options{.deadline = offload::clock::now() + 1h}, [] {
    return std::make_unique<int>(3);
  });
  auto limited = ex.submit(task_options{.rate = offload::rate_limit{.per_second = 1000}}, [] {
    return std::make_unique<int>(4);
  });
  EXPECT_EQ(*retried.get(), 1);
  EXPECT_EQ(*delayed.get(), 2);
  EXPECT_EQ(*timed.get(), 3);
  EXPECT_EQ(*limited.get(), 4);
}

TEST(MoveOnlyResults, AKeyIsRefusedNamingTheOption) {
  offload::executor ex{{.workers = 1}};
  expect_invalid(
      [&] {
        (void)ex.submit(task_options{.key = "k"}, [] {
          return std::make_unique<int>(1);
        });
      },
      "key");
  EXPECT_EQ(ex.stats().submitted, 0u);
}

TEST(Arguments, AreTakenAsByStdAsync) {
  offload::executor ex{{.workers = 1}};
  int counter = 0;
  auto bump = [](int& c, int by) {
    c += by;
    return c;
  };
  EXPECT_EQ(ex.submit(bump, std::ref(counter), 2).get(), 2);
  EXPECT_EQ(ex.submit(task_options{.retry = offload::retry_policy{.max_attempts = 2}},
                      bump,
                      std::ref(counter),
                      3)
                .get(),
            5);
  EXPECT_EQ(counter, 5);
  const std::string text = "abc";
  auto size_of = [](const std::string& s) {
    return s.size();
  };
  EXPECT_EQ(ex.submit(size_of, std::cref(text)).get(), 3u);
  auto owned = std::make_unique<int>(9);
  EXPECT_EQ(ex.submit(
                  [](std::unique_ptr<int> p) {
                    return *p;
                  },
                  std::move(owned))
                .get(),
            9);
}

// A key pending as a post() (no result) refuses a submit() of it, saying why.
TEST(Keys, SubmitAfterPostSaysTheKeyIsPendingAsAPost) {
  offload::executor ex{{.workers = 1}};
  offload_test::gate hold;
  ex.post(task_options{.key = "k"}, [&] {
    hold.wait();
  });
  expect_invalid(
      [&] {
        (void)ex.submit(task_options{.key = "k"}, [] {});
      },
      "post()");
  hold.open();
  ex.wait_idle();
}

// The dead-letter store is bounded by bytes as well as by count: large error texts evict the
// oldest records first.
TEST(DeadLetters, TheStoreIsBoundedByBytes) {
  offload::executor_options o{.workers = 1};
  o.dead_letters.max_bytes = 64 << 10;
  offload::executor ex{o};
  for (int i = 0; i < 200; ++i) {
    ex.post(task_options{.retry = offload::retry_policy{.max_attempts = 2, .base_delay = 0ms}}, [] {
      throw std::runtime_error(std::string(2000, 'e'));
    });
  }
  ex.wait_idle();
  const auto kept = ex.dead_letters();
  EXPECT_GT(kept.size(), 0u);
  EXPECT_LE(kept.size(), (64u << 10) / 2000u);
  EXPECT_EQ(kept.back().id, 200u);  // the newest stays
  expect_invalid(
      [] {
        offload::executor_options bad{.workers = 1};
        bad.dead_letters.max_bytes = 100;
        offload::executor ex2{bad};
      },
      "dead_letters.max_bytes");
}

// workers = 0 means one per CPU the process may run on: its affinity mask, not the machine.
TEST(WorkerCount, TheDefaultFollowsTheAffinityMask) {
  cpu_set_t saved;
  ASSERT_EQ(sched_getaffinity(0, sizeof saved, &saved), 0);
  cpu_set_t one;
  CPU_ZERO(&one);
  for (std::size_t cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &saved)) {
      CPU_SET(cpu, &one);
      break;
    }
  }
  ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
  const unsigned resolved = offload::executor_options{}.resolved_workers();
  unsigned started = 0;
  {
    offload::executor ex{{}};
    started = ex.worker_count();
  }
  ASSERT_EQ(sched_setaffinity(0, sizeof saved, &saved), 0);
  EXPECT_EQ(resolved, 1u);
  EXPECT_EQ(started, 1u);
  EXPECT_EQ(offload::executor_options{}.resolved_workers(),
            static_cast<unsigned>(CPU_COUNT(&saved)));
}
