// In-process executors side by side in one binary: offload, oneTBB, Boost.Asio thread_pool,
// std::async and a mutex+condvar pool (the baseline). Every peer waits for results the same way
// (bench/peers/completion.hpp), except offload, which uses its own future (spin, then futex).
//
//   latency/<peer>/hot   submit -> result, back to back (workers awake); p50/p99/p999 in ns
//   latency/<peer>/cold  the same after 5 ms idle (workers asleep)
//   latency/<peer>/gap_us:30  the same, one round trip every 30 µs (one worker idles, parks)
//   throughput/<peer>/P  100k empty tasks from P producer threads; ns per task
//   throughput/offload_timed  the same with every task timed for the histograms
//   lanes/...            priority lanes under saturation (see the functions' comments)
//   policy/retry_overhead  a retry policy that never retries vs a plain task
//   timers/lateness      30 ms delays with 1k..1M timers pending; memory per pending timer
//   fib30/<peer>         recursive fib(30) through task groups (no cut-off: 1.3M tasks);
//                        fib30/offload_futures does the same through submit() and future::get()
//                        (waits suspend fibers), fib30/offload_nofibers with fibers off (waits
//                        help), fib30/offload_coroutines with task<int> coroutines
//   bulk/post_loop, bulk/post_bulk  10^6 empty calls through post() one by one, or one post_bulk()
//   parallel_for/<peer>  a parallel loop over 10^6 empty bodies (offload, oneTBB)
//   store/submit, store/submit_find  10^4 tasks through submit(), or through a result_store
//                        (submit, and find once run): what the store adds per task;
//                        store/call_latency the same one task at a time, p50 of the calls
//   fibers/switch        this_task::yield() in a loop on an idle worker: two fiber switches each
//   fibers/first_wait    tasks that each suspend once (yield) vs plain tasks: the first wait's
//                        cost (a spare fiber from the worker's pool, two switches)
//   fibers/suspended_memory  resident bytes per task suspended on a promise (10k tasks)

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <future>
#include <thread>
#include <vector>

#include "peers/completion.hpp"
#include "peers/mutex_pool.hpp"
#include <benchmark/benchmark.h>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <tbb/global_control.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>
#include <tbb/task_group.h>
#include <unistd.h>

#include <offload/offload.hpp>

namespace {

using clock_type = std::chrono::steady_clock;
constexpr unsigned k_workers = 2;

// oneTBB caps its workers at hardware_concurrency - 1 unless told otherwise, which would give it
// one worker where every other peer has k_workers. Lift the cap for the whole run.
void allow_tbb_workers() {
  static tbb::global_control allow(tbb::global_control::max_allowed_parallelism, k_workers + 1);
}

// Records one latency sample per iteration and reports percentiles as counters. `cold`: 5 ms of
// sleep before each round trip. `gap`: round trips start `gap` apart (busy-waited, untimed), a
// steady trickle that leaves one worker idle long enough to park now and then.
template <class RoundTrip>
void measure_latency(benchmark::State& state,
                     bool cold,
                     RoundTrip round_trip,
                     std::chrono::microseconds gap = std::chrono::microseconds::zero()) {
  std::vector<double> samples;
  samples.reserve(static_cast<std::size_t>(state.max_iterations));
  auto next_start = clock_type::now();
  for (auto _ : state) {
    if (cold) {
      state.PauseTiming();
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      state.ResumeTiming();
    }
    if (gap > std::chrono::microseconds::zero()) {
      state.PauseTiming();
      while (clock_type::now() < next_start) {
      }
      next_start = clock_type::now() + gap;
      state.ResumeTiming();
    }
    const auto t0 = clock_type::now();
    round_trip();
    samples.push_back(std::chrono::duration<double, std::nano>(clock_type::now() - t0).count());
  }
  std::sort(samples.begin(), samples.end());
  auto pct = [&](double p) {
    return samples[std::min(samples.size() - 1,
                            static_cast<std::size_t>(p * static_cast<double>(samples.size())))];
  };
  state.counters["p50_ns"] = pct(0.50);
  state.counters["p99_ns"] = pct(0.99);
  state.counters["p999_ns"] = pct(0.999);
}

void latency_offload(benchmark::State& state) {
  offload::executor ex{offload::executor_options{.workers = k_workers}};
  measure_latency(state, state.range(0) == 1, [&] {
    benchmark::DoNotOptimize(ex.submit([] {
                                 return 1;
                               }).get());
  });
}
void latency_offload_paced(benchmark::State& state) {
  offload::executor ex{offload::executor_options{.workers = k_workers}};
  measure_latency(
      state,
      false,
      [&] {
        benchmark::DoNotOptimize(ex.submit([] {
                                     return 1;
                                   }).get());
      },
      std::chrono::microseconds(state.range(0)));
}
void latency_tbb_paced(benchmark::State& state) {
  allow_tbb_workers();
  tbb::task_arena arena(static_cast<int>(k_workers), 0);
  measure_latency(
      state,
      false,
      [&] {
        offload_bench::completion c;
        arena.enqueue([&] {
          c.set();
        });
        c.wait();
      },
      std::chrono::microseconds(state.range(0)));
}
void latency_tbb(benchmark::State& state) {
  allow_tbb_workers();
  tbb::task_arena arena(static_cast<int>(k_workers), 0);  // 0 reserved: the caller only submits
  measure_latency(state, state.range(0) == 1, [&] {
    offload_bench::completion c;
    arena.enqueue([&] {
      c.set();
    });
    c.wait();
  });
}
void latency_asio(benchmark::State& state) {
  boost::asio::thread_pool pool(k_workers);
  measure_latency(state, state.range(0) == 1, [&] {
    offload_bench::completion c;
    boost::asio::post(pool, [&] {
      c.set();
    });
    c.wait();
  });
  pool.join();
}
void latency_std_async(benchmark::State& state) {
  measure_latency(state, state.range(0) == 1, [&] {
    benchmark::DoNotOptimize(std::async(std::launch::async, [] {
                               return 1;
                             }).get());
  });
}
void latency_mutex_pool(benchmark::State& state) {
  offload_bench::mutex_pool pool(k_workers);
  measure_latency(state, state.range(0) == 1, [&] {
    offload_bench::completion c;
    pool.post([&] {
      c.set();
    });
    c.wait();
  });
}

// P producers each submit k_tasks/P empty tasks; the clock stops when all have run.
constexpr int k_tasks = 100'000;
template <class Submit, class WaitAll>
void measure_throughput(benchmark::State& state, Submit submit, WaitAll wait_all) {
  const int producers = static_cast<int>(state.range(0));
  for (auto _ : state) {
    std::vector<std::thread> threads;
    for (int p = 0; p < producers; ++p) {
      threads.emplace_back([&] {
        for (int i = 0; i < k_tasks / producers; ++i) submit();
      });
    }
    for (auto& t : threads) t.join();
    wait_all();
  }
  state.counters["ns_per_task"] =
      benchmark::Counter(static_cast<double>(k_tasks) * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.SetItemsProcessed(static_cast<std::int64_t>(k_tasks) * state.iterations());
}

// offload with `interval` = executor_options::timing_sample_interval (1 times every task).
void throughput_offload_sampled(benchmark::State& state, unsigned interval, bool fibers = true) {
  offload::executor ex{offload::executor_options{
      .workers = k_workers, .timing_sample_interval = interval, .fibers = fibers}};
  measure_throughput(
      state,
      [&] {
        ex.post([] {});
      },
      [&] {
        ex.wait_idle();
      });
}
void throughput_offload_nofibers(benchmark::State& state) {
  throughput_offload_sampled(state, offload::executor_options{}.timing_sample_interval, false);
}
void throughput_offload(benchmark::State& state) {
  throughput_offload_sampled(state, offload::executor_options{}.timing_sample_interval);
}
void throughput_tbb(benchmark::State& state) {
  allow_tbb_workers();
  tbb::task_arena arena(static_cast<int>(k_workers), 0);
  std::atomic<int> left{0};
  measure_throughput(
      state,
      [&] {
        left.fetch_add(1, std::memory_order_relaxed);
        arena.enqueue([&] {
          left.fetch_sub(1, std::memory_order_release);
        });
      },
      [&] {
        while (left.load(std::memory_order_acquire) != 0) std::this_thread::yield();
      });
}
void throughput_asio(benchmark::State& state) {
  boost::asio::thread_pool pool(k_workers);
  std::atomic<int> left{0};
  measure_throughput(
      state,
      [&] {
        left.fetch_add(1, std::memory_order_relaxed);
        boost::asio::post(pool, [&] {
          left.fetch_sub(1, std::memory_order_release);
        });
      },
      [&] {
        while (left.load(std::memory_order_acquire) != 0) std::this_thread::yield();
      });
  pool.join();
}
void throughput_mutex_pool(benchmark::State& state) {
  offload_bench::mutex_pool pool(k_workers);
  std::atomic<int> left{0};
  measure_throughput(
      state,
      [&] {
        left.fetch_add(1, std::memory_order_relaxed);
        pool.post([&] {
          left.fetch_sub(1, std::memory_order_release);
        });
      },
      [&] {
        while (left.load(std::memory_order_acquire) != 0) std::this_thread::yield();
      });
}

// Same as throughput/offload, timing every task for the histograms (default: one in 16).
void throughput_offload_timed(benchmark::State& state) {
  throughput_offload_sampled(state, 1);
}

// Busy work of a given length on the calling thread.
void spin_for(std::chrono::nanoseconds d) {
  const auto until = clock_type::now() + d;
  while (clock_type::now() < until) {
  }
}

// lanes/critical_start_delay/lanes:L — 2000 tasks of 200 µs queued in the low lane (L=1) or all
// in the normal lane (L=0); while they drain, a probe task is submitted every 500 µs (critical
// lane, or normal) and its submit → start delay recorded. p50/p99 as counters.
void critical_start_delay(benchmark::State& state) {
  const bool lanes = state.range(0) == 1;
  offload::executor ex{offload::executor_options{.workers = k_workers}};
  const offload::task_options backlog{.lane = lanes ? offload::lane::low : offload::lane::normal};
  const offload::task_options probe{.lane =
                                        lanes ? offload::lane::critical : offload::lane::normal};
  std::vector<double> samples;
  for (auto _ : state) {
    for (int i = 0; i < 2000; ++i) {
      ex.post(backlog, [] {
        spin_for(std::chrono::microseconds(200));
      });
    }
    // Probes are not waited for one by one: each records when it started.
    std::vector<clock_type::time_point> submitted(100);
    std::vector<clock_type::time_point> started(100);
    for (std::size_t i = 0; i < 100; ++i) {
      submitted[i] = clock_type::now();
      ex.post(probe, [&started, i] {
        started[i] = clock_type::now();
      });
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
    ex.wait_idle();
    for (std::size_t i = 0; i < 100; ++i) {
      samples.push_back(
          std::chrono::duration<double, std::micro>(started[i] - submitted[i]).count());
    }
    ex.wait_idle();
  }
  std::sort(samples.begin(), samples.end());
  auto pct = [&](double p) {
    return samples[std::min(samples.size() - 1,
                            static_cast<std::size_t>(p * static_cast<double>(samples.size())))];
  };
  state.counters["p50_us"] = pct(0.50);
  state.counters["p99_us"] = pct(0.99);
}

// lanes/low_under_critical_flood — 20000 critical tasks of 50 µs queued before 50 low tasks;
// reports the fraction of the critical backlog done when the last low task finished (target:
// under 0.5: the starvation guard keeps the low lane moving).
void low_under_critical_flood(benchmark::State& state) {
  offload::executor ex{offload::executor_options{.workers = k_workers}};
  double fraction = 0;
  for (auto _ : state) {
    std::atomic<int> critical_done{0};
    std::atomic<int> low_left{50};
    std::atomic<int> critical_at_last_low{0};
    for (int i = 0; i < 20000; ++i) {
      ex.post(offload::task_options{.lane = offload::lane::critical}, [&] {
        spin_for(std::chrono::microseconds(50));
        critical_done.fetch_add(1, std::memory_order_relaxed);
      });
    }
    for (int i = 0; i < 50; ++i) {
      ex.post(offload::task_options{.lane = offload::lane::low}, [&] {
        if (low_left.fetch_sub(1) == 1)
          critical_at_last_low.store(critical_done.load());
      });
    }
    ex.wait_idle();
    fraction = std::max(fraction, critical_at_last_low.load() / 20000.0);
  }
  state.counters["critical_done_fraction"] = fraction;
}

// policy/retry_overhead/policy:P — 100k empty posts from one producer, plain (P=0) or with a
// retry policy that never has to retry (P=1: max_attempts 3, exponential backoff). ns_per_task.
void retry_overhead(benchmark::State& state) {
  const bool with_policy = state.range(0) == 1;
  offload::executor ex{offload::executor_options{.workers = k_workers}};
  const offload::task_options policy{
      .retry =
          offload::retry_policy{.max_attempts = 3, .base_delay = std::chrono::milliseconds(1)}};
  for (auto _ : state) {
    for (int i = 0; i < k_tasks; ++i) {
      if (with_policy) {
        ex.post(policy, [] {});
      } else {
        ex.post([] {});
      }
    }
    ex.wait_idle();
  }
  state.counters["ns_per_task"] =
      benchmark::Counter(static_cast<double>(k_tasks) * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// Resident set size of this process in bytes (Linux /proc/self/statm).
double resident_bytes() {
  long pages_total = 0;
  long pages_resident = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages_total, &pages_resident) != 2)
      pages_resident = 0;
    std::fclose(f);
  }
  return static_cast<double>(pages_resident) * static_cast<double>(sysconf(_SC_PAGESIZE));
}

// timers/lateness/pending:N — N delayed posts pending an hour ahead; then 200 probes with a
// 30 ms delay, 0.5 ms apart: lateness = start - (submit + 30 ms), p50/p99 in µs, and none may
// start early (early_starts). bytes_per_timer: RSS growth per pending timer.
void timer_lateness(benchmark::State& state) {
  const auto pending = static_cast<int>(state.range(0));
  std::vector<double> lateness;
  double bytes_per_timer = 0;
  int early = 0;
  for (auto _ : state) {
    offload::executor ex{offload::executor_options{.workers = k_workers}};
    const double rss0 = resident_bytes();
    const offload::task_options far{.delay = std::chrono::hours(1)};
    for (int i = 0; i < pending; ++i) ex.post(far, [] {});
    bytes_per_timer = (resident_bytes() - rss0) / pending;
    constexpr int k_probes = 200;
    constexpr auto k_delay = std::chrono::milliseconds(30);
    std::vector<clock_type::time_point> submitted(k_probes);
    std::vector<clock_type::time_point> started(k_probes);
    std::atomic<int> done{0};
    for (std::size_t i = 0; i < k_probes; ++i) {
      submitted[i] = clock_type::now();
      ex.post(offload::task_options{.delay = k_delay}, [&, i] {
        started[i] = clock_type::now();
        done.fetch_add(1, std::memory_order_release);
      });
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
    while (done.load(std::memory_order_acquire) < k_probes)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    for (std::size_t i = 0; i < k_probes; ++i) {
      const double late =
          std::chrono::duration<double, std::micro>(started[i] - (submitted[i] + k_delay)).count();
      if (late < 0)
        ++early;
      lateness.push_back(late);
    }
    ex.shutdown(offload::shutdown_mode::cancel);  // resolves the pending timers
  }
  std::sort(lateness.begin(), lateness.end());
  auto pct = [&](double p) {
    return lateness[std::min(lateness.size() - 1,
                             static_cast<std::size_t>(p * static_cast<double>(lateness.size())))];
  };
  state.counters["late_p50_us"] = pct(0.50);
  state.counters["late_p99_us"] = pct(0.99);
  state.counters["early_starts"] = early;
  state.counters["bytes_per_timer"] = bytes_per_timer;
}

int fib_offload(offload::executor& ex, int n) {
  if (n < 2)
    return n;
  int a = 0;
  offload::task_group g{ex};
  g.run([&] {
    a = fib_offload(ex, n - 1);
  });
  const int b = fib_offload(ex, n - 2);
  g.wait();
  return a + b;
}
int fib_offload_futures(offload::executor& ex, int n) {
  if (n < 2)
    return n;
  auto a = ex.submit([&ex, n] {
    return fib_offload_futures(ex, n - 1);
  });
  const int b = fib_offload_futures(ex, n - 2);
  return a.get() + b;
}
int fib_tbb(int n) {
  if (n < 2)
    return n;
  int a = 0;
  tbb::task_group g;
  g.run([&] {
    a = fib_tbb(n - 1);
  });
  const int b = fib_tbb(n - 2);
  g.wait();
  return a + b;
}

void fib30_offload(benchmark::State& state) {
  offload::executor ex{offload::executor_options{.workers = k_workers}};
  for (auto _ : state)
    benchmark::DoNotOptimize(ex.submit([&] {
                                 return fib_offload(ex, 30);
                               }).get());
}
void fib30_offload_futures(benchmark::State& state) {
  offload::executor ex{offload::executor_options{.workers = k_workers}};
  for (auto _ : state)
    benchmark::DoNotOptimize(ex.submit([&] {
                                 return fib_offload_futures(ex, 30);
                               }).get());
}
void fib30_offload_nofibers(benchmark::State& state) {
  offload::executor ex{offload::executor_options{.workers = k_workers, .fibers = false}};
  for (auto _ : state)
    benchmark::DoNotOptimize(ex.submit([&] {
                                 return fib_offload(ex, 30);
                               }).get());
}
offload::task<int> fib_coroutine(offload::executor& ex, int n) {
  if (n < 2)
    co_return n;
  auto a = ex.submit([&ex, n] {
    return fib_coroutine(ex, n - 1);
  });
  const int b = co_await fib_coroutine(ex, n - 2);
  co_return co_await std::move(a) + b;
}
void fib30_offload_coroutines(benchmark::State& state) {
  offload::executor ex{offload::executor_options{.workers = k_workers}};
  for (auto _ : state)
    benchmark::DoNotOptimize(ex.submit([&] {
                                 return fib_coroutine(ex, 30);
                               }).get());
}

// Two fiber switches per iteration: the yielding task's fiber to a loop fiber and back.
void fiber_switch(benchmark::State& state) {
  offload::executor ex{offload::executor_options{.workers = 1}};
  constexpr int k_yields = 100'000;
  for (auto _ : state) {
    const auto start = clock_type::now();
    ex.submit([] {
        for (int i = 0; i < k_yields; ++i) offload::this_task::yield();
      }).get();
    const auto ns = std::chrono::duration<double, std::nano>(clock_type::now() - start).count();
    state.SetIterationTime(ns * 1e-9);
    state.counters["ns_per_switch"] = ns / (2.0 * k_yields);
  }
}

// Batches of 10k tasks from one producer; arg 1: each task suspends once (yield), arg 0: not.
void fiber_first_wait(benchmark::State& state) {
  const bool wait = state.range(0) != 0;
  offload::executor ex{offload::executor_options{.workers = 1}};
  constexpr int k_tasks = 10'000;
  std::vector<offload::future<void>> done;
  done.reserve(k_tasks);
  for (auto _ : state) {
    done.clear();
    for (int i = 0; i < k_tasks; ++i) {
      done.push_back(ex.submit([wait] {
        if (wait)
          offload::this_task::yield();
      }));
    }
    for (auto& f : done) f.get();
  }
  state.SetItemsProcessed(state.iterations() * k_tasks);
}

// Resident memory per suspended task: 10k tasks wait on one promise (one worker).
void fiber_suspended_memory(benchmark::State& state) {
  constexpr int k_tasks = 10'000;
  for (auto _ : state) {
    offload::executor ex{offload::executor_options{.workers = 1}};
    ex.submit([] {}).get();  // the worker's first fiber exists before the baseline
    const double rss0 = resident_bytes();
    offload::promise<void> p;
    auto gate = std::make_shared<offload::future<void>>(p.get_future());
    std::vector<offload::future<void>> done;
    done.reserve(k_tasks);
    for (int i = 0; i < k_tasks; ++i)
      done.push_back(ex.submit([gate] {
        gate->wait();
      }));
    while (ex.stats().suspended < k_tasks) std::this_thread::yield();
    const double rss1 = resident_bytes();
    state.counters["bytes_per_suspended_task"] = (rss1 - rss0) / k_tasks;
    state.counters["mapped_bytes_per_fiber"] =
        static_cast<double>(ex.stats().fiber_stack_bytes) / static_cast<double>(ex.stats().fibers);
    p.set_value();
    for (auto& f : done) f.get();
  }
}

void fib30_tbb(benchmark::State& state) {
  allow_tbb_workers();
  tbb::task_arena arena(static_cast<int>(k_workers));
  for (auto _ : state) {
    int r = 0;
    arena.execute([&] {
      r = fib_tbb(30);
    });
    benchmark::DoNotOptimize(r);
  }
}

// 10^6 calls of an empty body (it only keeps its index alive), each way of making them: a loop of
// post(), one post_bulk(), offload::parallel_for, and oneTBB's parallel_for (auto_partitioner,
// run in an arena of k_workers whose second thread is the caller, its usual idiom). Time per
// call; the offload rows wait with wait_idle() (post, post_bulk) or the loop's own return.
constexpr std::size_t k_bulk_calls = 1'000'000;

void count_calls(benchmark::State& state) {
  state.counters["ns_per_call"] = benchmark::Counter(
      static_cast<double>(k_bulk_calls) * static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void bulk_post_loop(benchmark::State& state) {
  offload::executor ex{{.workers = k_workers}};
  for (auto _ : state) {
    for (std::size_t i = 0; i < k_bulk_calls; ++i)
      ex.post([i] {
        benchmark::DoNotOptimize(i);
      });
    ex.wait_idle();
  }
  count_calls(state);
}
void bulk_post_bulk(benchmark::State& state) {
  offload::executor ex{{.workers = k_workers}};
  for (auto _ : state) {
    ex.post_bulk(k_bulk_calls, [](std::size_t i) {
      benchmark::DoNotOptimize(i);
    });
    ex.wait_idle();
  }
  count_calls(state);
}
void parallel_for_offload(benchmark::State& state) {
  offload::executor ex{{.workers = k_workers}};
  for (auto _ : state) {
    offload::parallel_for(ex, std::size_t{0}, k_bulk_calls, [](std::size_t i) {
      benchmark::DoNotOptimize(i);
    });
  }
  count_calls(state);
}
void parallel_for_tbb(benchmark::State& state) {
  allow_tbb_workers();
  tbb::task_arena arena(static_cast<int>(k_workers));
  for (auto _ : state) {
    arena.execute([&] {
      tbb::parallel_for(std::size_t{0}, k_bulk_calls, [](std::size_t i) {
        benchmark::DoNotOptimize(i);
      });
    });
  }
  count_calls(state);
}

// The cost a result_store adds to a task: submit() and one find() of the id once it ran, against a
// plain submit() and its future kept, 10^4 tasks a round, the results read once all have run.
constexpr int k_store_tasks = 10'000;

void store_plain_submit(benchmark::State& state) {
  offload::executor ex{{.workers = k_workers}};
  std::vector<offload::future<int>> futures;
  futures.reserve(k_store_tasks);
  for (auto _ : state) {
    for (int i = 0; i < k_store_tasks; ++i)
      futures.push_back(ex.submit([i] {
        return i;
      }));
    ex.wait_idle();
    for (auto& f : futures) benchmark::DoNotOptimize(f.get());
    futures.clear();
  }
  state.counters["ns_per_task"] = benchmark::Counter(
      static_cast<double>(k_store_tasks) * static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
void store_submit_find(benchmark::State& state) {
  offload::executor ex{{.workers = k_workers}};
  offload::result_store<int> store{ex,
                                   {.keep_for = std::chrono::hours(1), .max_entries = 1'000'000}};
  std::vector<std::string> ids;
  ids.reserve(k_store_tasks);
  for (auto _ : state) {
    for (int i = 0; i < k_store_tasks; ++i) {
      ids.push_back(store.submit([i] {
        return i;
      }));
    }
    ex.wait_idle();
    for (const auto& id : ids) benchmark::DoNotOptimize(store.find(id)->value());
    state.PauseTiming();
    ids.clear();
    state.ResumeTiming();
  }
  state.counters["ns_per_task"] = benchmark::Counter(
      static_cast<double>(k_store_tasks) * static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// The same, one task at a time, timing only the calls (the wait for the task is not timed):
// submit() against a store's submit() plus its find() once the task ran; p50 of 20k tasks.
void store_call_latency(benchmark::State& state) {
  offload::executor ex{{.workers = k_workers}};
  offload::result_store<int> store{ex};
  std::vector<double> plain, stored;
  for (auto _ : state) {
    auto t0 = clock_type::now();
    offload::future<int> f = ex.submit([] {
      return 1;
    });
    auto t1 = clock_type::now();
    benchmark::DoNotOptimize(f.get());
    plain.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count());
    t0 = clock_type::now();
    const std::string id = store.submit([] {
      return 1;
    });
    t1 = clock_type::now();
    while (!offload::is_terminal(store.find(id)->state())) std::this_thread::yield();
    const auto t2 = clock_type::now();
    benchmark::DoNotOptimize(store.find(id)->value());
    const auto t3 = clock_type::now();
    stored.push_back(std::chrono::duration<double, std::nano>((t1 - t0) + (t3 - t2)).count());
  }
  const auto p50 = [](std::vector<double>& v) {
    std::nth_element(v.begin(), v.begin() + static_cast<long>(v.size() / 2), v.end());
    return v[v.size() / 2];
  };
  state.counters["submit_p50_ns"] = p50(plain);
  state.counters["store_submit_find_p50_ns"] = p50(stored);
}

}  // namespace

BENCHMARK(latency_offload)
    ->Name("latency/offload")
    ->ArgName("cold")
    ->Arg(0)
    ->Iterations(20000)
    ->UseRealTime();
BENCHMARK(latency_tbb)
    ->Name("latency/tbb")
    ->ArgName("cold")
    ->Arg(0)
    ->Iterations(20000)
    ->UseRealTime();
BENCHMARK(latency_asio)
    ->Name("latency/asio")
    ->ArgName("cold")
    ->Arg(0)
    ->Iterations(20000)
    ->UseRealTime();
BENCHMARK(latency_std_async)
    ->Name("latency/std_async")
    ->ArgName("cold")
    ->Arg(0)
    ->Iterations(5000)
    ->UseRealTime();
BENCHMARK(latency_mutex_pool)
    ->Name("latency/mutex_pool")
    ->ArgName("cold")
    ->Arg(0)
    ->Iterations(20000)
    ->UseRealTime();
BENCHMARK(latency_offload_paced)
    ->Name("latency/offload")
    ->ArgName("gap_us")
    ->Arg(30)
    ->Iterations(20000)
    ->UseRealTime();
BENCHMARK(latency_tbb_paced)
    ->Name("latency/tbb")
    ->ArgName("gap_us")
    ->Arg(30)
    ->Iterations(20000)
    ->UseRealTime();
BENCHMARK(latency_offload)
    ->Name("latency/offload")
    ->ArgName("cold")
    ->Arg(1)
    ->Iterations(500)
    ->UseRealTime();
BENCHMARK(latency_tbb)
    ->Name("latency/tbb")
    ->ArgName("cold")
    ->Arg(1)
    ->Iterations(500)
    ->UseRealTime();
BENCHMARK(latency_asio)
    ->Name("latency/asio")
    ->ArgName("cold")
    ->Arg(1)
    ->Iterations(500)
    ->UseRealTime();
BENCHMARK(latency_mutex_pool)
    ->Name("latency/mutex_pool")
    ->ArgName("cold")
    ->Arg(1)
    ->Iterations(500)
    ->UseRealTime();
BENCHMARK(throughput_offload)
    ->Name("throughput/offload")
    ->ArgName("producers")
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime();
BENCHMARK(throughput_offload_nofibers)
    ->Name("throughput/offload_nofibers")
    ->ArgName("producers")
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime();
BENCHMARK(throughput_offload_timed)
    ->Name("throughput/offload_timed")
    ->ArgName("producers")
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime();
BENCHMARK(throughput_tbb)
    ->Name("throughput/tbb")
    ->ArgName("producers")
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime();
BENCHMARK(throughput_asio)
    ->Name("throughput/asio")
    ->ArgName("producers")
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime();
BENCHMARK(throughput_mutex_pool)
    ->Name("throughput/mutex_pool")
    ->ArgName("producers")
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime();
BENCHMARK(fib30_offload)->Name("fib30/offload")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(fib30_offload_futures)
    ->Name("fib30/offload_futures")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(fib30_offload_nofibers)
    ->Name("fib30/offload_nofibers")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(fib30_offload_coroutines)
    ->Name("fib30/offload_coroutines")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(fib30_tbb)->Name("fib30/tbb")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(bulk_post_loop)->Name("bulk/post_loop")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(bulk_post_bulk)->Name("bulk/post_bulk")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(parallel_for_offload)
    ->Name("parallel_for/offload")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(parallel_for_tbb)->Name("parallel_for/tbb")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(store_plain_submit)->Name("store/submit")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(store_submit_find)
    ->Name("store/submit_find")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(store_call_latency)->Name("store/call_latency")->Iterations(20000)->UseRealTime();
BENCHMARK(fiber_switch)->Name("fibers/switch")->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(fiber_first_wait)
    ->Name("fibers/first_wait")
    ->ArgName("waits")
    ->Arg(0)
    ->Arg(1)
    ->UseRealTime();
BENCHMARK(fiber_suspended_memory)
    ->Name("fibers/suspended_memory")
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK(retry_overhead)
    ->Name("policy/retry_overhead")
    ->ArgName("policy")
    ->Arg(0)
    ->Arg(1)
    ->UseRealTime();
BENCHMARK(timer_lateness)
    ->Name("timers/lateness")
    ->ArgName("pending")
    ->Arg(1000)
    ->Arg(100000)
    ->Arg(1000000)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(critical_start_delay)
    ->Name("lanes/critical_start_delay")
    ->ArgName("lanes")
    ->Arg(0)
    ->Arg(1)
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(low_under_critical_flood)
    ->Name("lanes/low_under_critical_flood")
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK_MAIN();
