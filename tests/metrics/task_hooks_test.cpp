// executor_options::hooks: on_submitted, on_started, on_finished and on_failure see every task
// with its name, lane and outcome; a throwing hook does not break the executor; unset hooks work.

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "metrics_test_support.hpp"
#include "unit/test_support.hpp"
#include <gtest/gtest.h>

#include <offload/offload.hpp>

namespace {

using namespace std::chrono_literals;
using offload::lane;
using offload::task_outcome;
using offload_test::k_lanes;

/// A copy of a task_event (its name is only valid during the call).
struct recorded {
  std::string name;
  lane task_lane;
  task_outcome outcome;
  std::exception_ptr error;
  std::thread::id thread;
};

/// Records every hook call; thread-safe.
class recorder {
 public:
  offload::task_hooks hooks() {
    return {
        .on_failure =
            [this](const offload::task_event& e) {
              add(m_failures, e);
            },
        .on_submitted =
            [this](const offload::task_event& e) {
              add(m_submitted, e);
            },
        .on_started =
            [this](const offload::task_event& e) {
              add(m_started, e);
            },
        .on_finished =
            [this](const offload::task_event& e) {
              add(m_finished, e);
            },
    };
  }
  std::vector<recorded> failures() const { return copy(m_failures); }
  std::vector<recorded> submitted() const { return copy(m_submitted); }
  std::vector<recorded> started() const { return copy(m_started); }
  std::vector<recorded> finished() const { return copy(m_finished); }

 private:
  void add(std::vector<recorded>& to, const offload::task_event& e) {
    std::lock_guard lock(m_mutex);
    to.push_back({std::string(e.name), e.lane, e.outcome, e.error, std::this_thread::get_id()});
  }
  std::vector<recorded> copy(const std::vector<recorded>& v) const {
    std::lock_guard lock(m_mutex);
    return v;
  }
  mutable std::mutex m_mutex;
  std::vector<recorded> m_failures, m_submitted, m_started, m_finished;
};

using key = std::tuple<std::string, lane, task_outcome>;

std::map<key, int> tally(const std::vector<recorded>& events, bool with_outcome) {
  std::map<key, int> t;
  for (const auto& e : events)
    ++t[{e.name, e.task_lane, with_outcome ? e.outcome : task_outcome::succeeded}];
  return t;
}

std::string what_of(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "?";
  }
}

/// Blocks `n` workers in tasks named "blocker" of lane `l` until `g` opens.
void block_workers(offload::executor& ex, offload_test::gate& g, unsigned n, lane l) {
  auto started = std::make_shared<std::atomic<unsigned>>(0);
  for (unsigned i = 0; i < n; ++i) {
    ex.post(offload::task_options{.lane = l, .name = "blocker"}, [&g, started] {
      started->fetch_add(1);
      g.wait();
    });
  }
  offload_test::eventually([&] {
    return started->load() == n;
  });
}

// Every task is seen by on_submitted (on the submitting thread), on_started and on_finished (on a
// worker) with its name and lane, and on_finished with its outcome: from several producers, in
// every lane, named and unnamed, succeeding, failing (submit and post) and cancelled.
TEST(TaskHooks, EveryTaskIsSeenWithNameLaneAndOutcome) {
  recorder rec;
  constexpr unsigned k_workers = 2;
  offload::executor ex{{.workers = k_workers, .hooks = rec.hooks()}};

  std::map<key, int> expected_finished;  // (name, lane, outcome)
  std::map<key, int> expected_submitted;
  std::mutex expected_mutex;
  auto expect = [&](const std::string& name, lane l, task_outcome o) {
    std::lock_guard lock(expected_mutex);
    ++expected_finished[{name, l, o}];
    ++expected_submitted[{name, l, task_outcome::succeeded}];
  };

  std::vector<offload::future<int>> cancelled;
  offload_test::gate g;  // outlives the blocked tasks: they finish before the executor
  {
    block_workers(ex, g, k_workers, lane::critical);
    for (unsigned i = 0; i < k_workers; ++i)
      expect("blocker", lane::critical, task_outcome::succeeded);
    for (lane l : k_lanes) {
      cancelled.push_back(ex.submit(offload::task_options{.lane = l, .name = "cancel_me"}, [] {
        return 0;
      }));
      ASSERT_TRUE(cancelled.back().cancel());
      expect("cancel_me", l, task_outcome::cancelled);
    }
    g.open();
  }

  std::set<std::thread::id> producer_ids;
  std::vector<std::thread> producers;
  for (int p = 0; p < 2; ++p) {
    producers.emplace_back([&, p] {
      std::vector<offload::future<int>> fs;
      for (int i = 0; i < 500; ++i) {
        const lane l = k_lanes[static_cast<std::size_t>(i + p) % 4];
        const std::string name =
            i % 3 == 0 ? std::string() : "job_" + std::string(offload::to_string(l));
        if (i % 5 == 0) {
          const bool throws = i % 10 == 0;
          ex.post(offload::task_options{.lane = l, .name = name}, [throws] {
            if (throws)
              throw std::runtime_error("post failed");
          });
          expect(name, l, throws ? task_outcome::failed : task_outcome::succeeded);
        } else {
          const bool throws = i % 7 == 0;
          fs.push_back(ex.submit(offload::task_options{.lane = l, .name = name}, [throws, i] {
            if (throws)
              throw std::runtime_error("submit failed");
            return i;
          }));
          expect(name, l, throws ? task_outcome::failed : task_outcome::succeeded);
        }
      }
      for (auto& f : fs) {
        try {
          f.get();
        } catch (const std::runtime_error&) {
        }
      }
    });
    producer_ids.insert(producers.back().get_id());
  }
  for (auto& t : producers) t.join();
  ex.wait_idle();  // hooks of finished tasks happen-before wait_idle() returns

  const auto submitted = rec.submitted();
  const auto started = rec.started();
  const auto finished = rec.finished();
  const auto failures = rec.failures();
  EXPECT_EQ(tally(submitted, false), expected_submitted);
  EXPECT_EQ(tally(finished, true), expected_finished);

  // Started: every task that ran (succeeded or failed) was announced, with its name and lane.
  std::map<key, int> expected_started;
  int ran = 0;
  for (const auto& [k, n] : expected_finished) {
    if (std::get<2>(k) != task_outcome::cancelled) {
      expected_started[{std::get<0>(k), std::get<1>(k), task_outcome::succeeded}] += n;
      ran += n;
    }
  }
  // (A task whose future was cancelled while queued may be announced too: the worker finds out
  // only when it runs the task's node. So: at least every task that ran, at most every task.)
  auto started_tally = tally(started, false);
  for (const auto& [k, n] : expected_started) {
    EXPECT_GE(started_tally[k], n) << std::get<0>(k) << "/" << offload::to_string(std::get<1>(k));
  }
  EXPECT_GE(static_cast<int>(started.size()), ran);
  EXPECT_LE(started.size(), finished.size());

  // Failures: each failed task, once, with its exception; finished events carry it too.
  int failed = 0;
  for (const auto& [k, n] : expected_finished) {
    if (std::get<2>(k) == task_outcome::failed)
      failed += n;
  }
  EXPECT_EQ(static_cast<int>(failures.size()), failed);
  std::map<key, int> expected_failures;
  for (const auto& [k, n] : expected_finished) {
    if (std::get<2>(k) == task_outcome::failed)
      expected_failures[k] = n;
  }
  EXPECT_EQ(tally(failures, true), expected_failures);
  for (const auto& e : failures) {
    ASSERT_TRUE(e.error);
    const std::string what = what_of(e.error);
    EXPECT_TRUE(what == "post failed" || what == "submit failed") << what;
  }
  for (const auto& e : finished) {
    EXPECT_EQ(static_cast<bool>(e.error), e.outcome == task_outcome::failed) << e.name;
  }

  // Threads: producers' submissions are announced on the producer; the rest on workers.
  for (const auto& e : submitted) {
    if (e.name != "blocker" && e.name != "cancel_me") {
      EXPECT_TRUE(producer_ids.count(e.thread)) << e.name;
    }
  }
  for (const auto& e : started) EXPECT_FALSE(producer_ids.count(e.thread));
  for (const auto& e : finished) EXPECT_FALSE(producer_ids.count(e.thread));

  // The hooks do not change the books.
  offload_test::expect_reconciled_idle(ex.metrics());
}

// on_failure receives the exception itself for a throwing submit() and a throwing post(), with
// the task's name and lane; on_task_error still gets the posted task's exception.
TEST(TaskHooks, OnFailureGetsTheExceptionOfSubmitAndPost) {
  recorder rec;
  std::mutex m;
  std::vector<std::exception_ptr> task_errors;
  offload::executor ex{{.workers = 1,
                        .on_task_error =
                            [&](std::exception_ptr e) {
                              std::lock_guard lock(m);
                              task_errors.push_back(std::move(e));
                            },
                        .hooks = rec.hooks()}};
  auto f =
      ex.submit(offload::task_options{.lane = lane::high, .name = "resize_image"}, []() -> int {
        throw std::invalid_argument("bad image");
      });
  EXPECT_THROW(f.get(), std::invalid_argument);
  ex.post(offload::task_options{.lane = lane::low, .name = "send_email"}, [] {
    throw std::out_of_range("no such user");
  });
  ex.post([] {});  // unnamed and fine: no failure
  ex.wait_idle();

  const auto failures = rec.failures();
  ASSERT_EQ(failures.size(), 2u);
  EXPECT_EQ(failures[0].name, "resize_image");
  EXPECT_EQ(failures[0].task_lane, lane::high);
  EXPECT_EQ(failures[0].outcome, task_outcome::failed);
  EXPECT_THROW(std::rethrow_exception(failures[0].error), std::invalid_argument);
  EXPECT_EQ(what_of(failures[0].error), "bad image");
  EXPECT_EQ(failures[1].name, "send_email");
  EXPECT_EQ(failures[1].task_lane, lane::low);
  EXPECT_THROW(std::rethrow_exception(failures[1].error), std::out_of_range);
  EXPECT_EQ(what_of(failures[1].error), "no such user");
  {
    std::lock_guard lock(m);
    ASSERT_EQ(task_errors.size(), 1u);
    EXPECT_EQ(what_of(task_errors[0]), "no such user");
  }
  // Lane normal runs before lane low: the order of the two posts is not the order of submission.
  std::map<key, int> expected_finished{
      {{"resize_image", lane::high, task_outcome::failed}, 1},
      {{"send_email", lane::low, task_outcome::failed}, 1},
      {{"", lane::normal, task_outcome::succeeded}, 1},
  };
  EXPECT_EQ(tally(rec.finished(), true), expected_finished);
}

// A task spawned inside a worker without options is announced in its parent's lane, unnamed, on
// the worker.
TEST(TaskHooks, SpawnedTasksAreAnnouncedInTheirInheritedLane) {
  recorder rec;
  offload::executor ex{{.workers = 2, .hooks = rec.hooks()}};
  auto parent = ex.submit(offload::task_options{.lane = lane::low, .name = "parent"}, [&ex] {
    return ex
        .submit([] {
          return 5;
        })
        .get();
  });
  EXPECT_EQ(parent.get(), 5);
  ex.wait_idle();
  const auto submitted = rec.submitted();
  ASSERT_EQ(submitted.size(), 2u);
  EXPECT_EQ(submitted[0].name, "parent");
  EXPECT_EQ(submitted[1].name, "");
  EXPECT_EQ(submitted[1].task_lane, lane::low);
  EXPECT_NE(submitted[1].thread, std::this_thread::get_id());
  std::map<key, int> expected{{{"parent", lane::low, task_outcome::succeeded}, 1},
                              {{"", lane::low, task_outcome::succeeded}, 1}};
  EXPECT_EQ(tally(rec.finished(), true), expected);
  EXPECT_EQ(tally(rec.started(), true), expected);
}

// Hooks that throw are swallowed: tasks still run, futures still resolve, books still balance,
// and every hook is still called for every task.
TEST(TaskHooks, ThrowingHooksDoNotBreakTheExecutor) {
  std::atomic<int> submitted{0}, started{0}, finished{0}, failures{0}, task_errors{0};
  offload::executor ex{{.workers = 2,
                        .on_task_error =
                            [&](std::exception_ptr) {
                              ++task_errors;
                              throw std::runtime_error("on_task_error throws");
                            },
                        .hooks = offload::task_hooks{
                            .on_failure =
                                [&](const offload::task_event&) {
                                  ++failures;
                                  throw std::runtime_error("on_failure throws");
                                },
                            .on_submitted =
                                [&](const offload::task_event&) {
                                  ++submitted;
                                  throw 42;  // not even a std::exception
                                },
                            .on_started =
                                [&](const offload::task_event&) {
                                  ++started;
                                  throw std::runtime_error("on_started throws");
                                },
                            .on_finished =
                                [&](const offload::task_event&) {
                                  ++finished;
                                  throw std::runtime_error("on_finished throws");
                                },
                        }}};
  std::vector<offload::future<int>> fs;
  for (int i = 0; i < 200; ++i) {
    const lane l = k_lanes[static_cast<std::size_t>(i) % 4];
    if (i % 4 == 0) {
      ex.post(offload::task_options{.lane = l, .name = "p"}, [i] {
        if (i % 8 == 0)
          throw std::runtime_error("post failed");
      });
    } else {
      fs.push_back(ex.submit(offload::task_options{.lane = l, .name = "s"}, [i] {
        if (i % 3 == 0)
          throw std::runtime_error("submit failed");
        return i;
      }));
    }
  }
  int submit_failures = 0;
  for (auto& f : fs) {
    try {
      f.get();
    } catch (const std::runtime_error&) {
      // (what() is not read here: the worker may drop the exception's last reference after this
      // thread's, which TSan cannot see through libstdc++'s uninstrumented reference count.)
      ++submit_failures;
    }
  }
  ex.wait_idle();
  EXPECT_EQ(submitted.load(), 200);
  EXPECT_EQ(started.load(), 200);
  EXPECT_EQ(finished.load(), 200);
  EXPECT_EQ(task_errors.load(), 25);  // posts with i % 8 == 0
  EXPECT_EQ(failures.load(), 25 + submit_failures);
  const offload::metrics_snapshot m = ex.metrics();
  offload_test::expect_reconciled_idle(m);
  EXPECT_EQ(offload_test::sum_lanes(m,
                                    [](const offload::lane_metrics& l) {
                                      return l.completed_of(task_outcome::failed);
                                    }),
            static_cast<std::uint64_t>(25 + submit_failures));
  // Still usable afterwards.
  EXPECT_EQ(ex.submit([] {
                return 1;
              }).get(),
            1);
}

// Unset hooks (the default) and partly set hooks work.
TEST(TaskHooks, UnsetAndPartlySetHooksWork) {
  {
    offload::executor ex{{.workers = 2}};
    EXPECT_EQ(ex.submit(offload::task_options{.lane = lane::high, .name = "x"},
                        [] {
                          return 3;
                        })
                  .get(),
              3);
    auto f = ex.submit([]() -> int {
      throw std::runtime_error("no hook to see this");
    });
    EXPECT_THROW(f.get(), std::runtime_error);
    ex.post([] {
      throw std::runtime_error("nor this");
    });
    ex.wait_idle();
    offload_test::expect_reconciled_idle(ex.metrics());
  }
  std::atomic<int> finished{0};
  {
    offload::executor ex{
        {.workers = 2, .hooks = offload::task_hooks{.on_finished = [&](const offload::task_event&) {
                         ++finished;
                       }}}};
    for (int i = 0; i < 50; ++i) ex.post([] {});
    ex.submit([]() -> int {
        throw std::runtime_error("x");
      }).wait();
    ex.wait_idle();
  }
  EXPECT_EQ(finished.load(), 51);
  std::atomic<int> failures{0};
  {
    offload::executor ex{
        {.workers = 1, .hooks = offload::task_hooks{.on_failure = [&](const offload::task_event&) {
                         ++failures;
                       }}}};
    for (int i = 0; i < 10; ++i) {
      ex.post([i] {
        if (i % 2 == 0)
          throw std::runtime_error("x");
      });
    }
    ex.wait_idle();
  }
  EXPECT_EQ(failures.load(), 5);
}

// Tasks that shutdown(cancel) drops are reported finished with outcome cancelled.
TEST(TaskHooks, ShutdownCancelReportsDroppedTasks) {
  recorder rec;
  offload::executor ex{{.workers = 1, .hooks = rec.hooks()}};
  offload_test::gate g;
  block_workers(ex, g, 1, lane::normal);
  std::vector<offload::future<int>> fs;
  for (int i = 0; i < 5; ++i) {
    fs.push_back(ex.submit(offload::task_options{.lane = lane::low, .name = "dropped"}, [i] {
      return i;
    }));
  }
  std::thread opener([&] {
    offload_test::eventually([&] {
      try {
        ex.post(offload::task_options{.lane = lane::high, .name = "probe"}, [] {});
        return false;
      } catch (const offload::rejected&) {
        return true;
      }
    });
    g.open();
  });
  ex.shutdown(offload::shutdown_mode::cancel);
  opener.join();
  for (auto& f : fs) EXPECT_THROW(f.get(), offload::cancelled);
  const auto t = tally(rec.finished(), true);
  EXPECT_EQ(t.at({"dropped", lane::low, task_outcome::cancelled}), 5);
  EXPECT_EQ(t.at({"blocker", lane::normal, task_outcome::succeeded}), 1);
  // Every accepted probe is reported too, whether it ran before shutdown or was dropped.
  int probes_finished = 0;
  for (const auto& [k, n] : t) {
    if (std::get<0>(k) == "probe")
      probes_finished += n;
  }
  const auto submitted = tally(rec.submitted(), false);
  const key probe{"probe", lane::high, task_outcome::succeeded};
  EXPECT_EQ(probes_finished, submitted.count(probe) ? submitted.at(probe) : 0);
}

/// One queued and two caller_runs tasks (one throws) in lane high behind a blocked worker.
void run_caller_runs_scenario(recorder& rec) {
  offload::executor_options options{.workers = 1, .hooks = rec.hooks()};
  options.lanes[offload::index_of(lane::high)] = {
      .capacity = 1, .overflow = offload::overflow_policy::caller_runs};
  offload::executor ex{options};
  offload_test::gate g;
  block_workers(ex, g, 1, lane::normal);
  auto queued = ex.submit(offload::task_options{.lane = lane::high, .name = "queued"}, [] {
    return 1;
  });
  auto here = ex.submit(offload::task_options{.lane = lane::high, .name = "here"}, [] {
    return 2;
  });
  auto here_fails =
      ex.submit(offload::task_options{.lane = lane::high, .name = "here_fails"}, []() -> int {
        throw std::runtime_error("caller_runs failure");
      });
  EXPECT_EQ(here.get(), 2);
  EXPECT_THROW(here_fails.get(), std::runtime_error);
  g.open();
  EXPECT_EQ(queued.get(), 1);
  ex.wait_idle();
}

const std::map<key, int> k_caller_runs_announced{
    {{"blocker", lane::normal, task_outcome::succeeded}, 1},
    {{"queued", lane::high, task_outcome::succeeded}, 1},
    {{"here", lane::high, task_outcome::succeeded}, 1},
    {{"here_fails", lane::high, task_outcome::succeeded}, 1},
};

// Tasks run on the submitting thread by overflow_policy::caller_runs are reported like any
// other: submitted, finished with their outcome, and on_failure when they throw.
TEST(TaskHooks, CallerRunsTasksAreReportedLikeOthers) {
  recorder rec;
  run_caller_runs_scenario(rec);
  const std::map<key, int> expected_finished{
      {{"blocker", lane::normal, task_outcome::succeeded}, 1},
      {{"queued", lane::high, task_outcome::succeeded}, 1},
      {{"here", lane::high, task_outcome::succeeded}, 1},
      {{"here_fails", lane::high, task_outcome::failed}, 1},
  };
  EXPECT_EQ(tally(rec.finished(), true), expected_finished);
  EXPECT_EQ(tally(rec.submitted(), false), k_caller_runs_announced);
  const auto failures = rec.failures();
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_EQ(failures[0].name, "here_fails");
  EXPECT_EQ(what_of(failures[0].error), "caller_runs failure");
}

// ... and started: on_started is called for every task that runs, wherever it runs.
TEST(TaskHooks, CallerRunsTasksAreAnnouncedAsStarted) {
  recorder rec;
  run_caller_runs_scenario(rec);
  EXPECT_EQ(tally(rec.started(), false), k_caller_runs_announced)
      << "on_started must be called for caller_runs tasks too";
}

}  // namespace
