// cancellation_and_deadlines: a queued task can be cancelled before it runs, a running one asked
// to stop, and a task that cannot start in time expires instead of running late.
//
//   one worker: [long task: polls stop_requested()] ... queue: [report] [quote, deadline 20 ms]
//   report.cancel()  → never runs, get() throws offload::cancelled
//   20 ms pass       → quote expires, get() throws offload::expired
//   long.cancel()    → false (it runs), but it sees stop_requested() and ends early
//
// Exits 0 only if every outcome holds.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

#include <offload/offload.hpp>

using namespace std::chrono_literals;

int main() {
  int failures = 0;
  auto check = [&](bool ok, const char* what) {
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", what);
    failures += ok ? 0 : 1;
  };
  offload::executor ex{offload::executor_options{.workers = 1}};

  std::atomic<bool> started{false};
  std::atomic<int> steps{0};
  auto long_task = ex.submit([&] {
    started = true;
    for (int i = 0; i < 1000; ++i) {  // 10 s if nobody stops it
      if (offload::this_task::stop_requested())
        throw offload::cancelled("stopped at step " + std::to_string(i));
      std::this_thread::sleep_for(10ms);
      steps.fetch_add(1);
    }
  });
  while (!started) std::this_thread::sleep_for(1ms);

  std::atomic<bool> report_ran{false}, quote_ran{false};
  auto report = ex.submit([&] {
    report_ran = true;
  });
  auto quote = ex.submit(offload::task_options{.deadline = offload::clock::now() + 20ms}, [&] {
    quote_ran = true;
  });

  check(report.cancel(), "a queued task is cancelled");
  try {
    report.get();
    check(false, "report threw");
  } catch (const offload::cancelled&) {
    check(true, "its get() throws offload::cancelled");
  }

  quote.wait();  // resolved by the timer at its deadline, while the worker is still busy
  check(quote.state() == offload::task_state::expired, "a task past its deadline expires");
  try {
    quote.get();
    check(false, "quote threw");
  } catch (const offload::expired&) {
    check(true, "its get() throws offload::expired");
  }

  check(!long_task.cancel(), "cancel() of a running task returns false");
  try {
    long_task.get();
    check(false, "long task stopped");
  } catch (const offload::cancelled& e) {
    std::printf("     %s\n", e.what());
    check(steps.load() < 100, "but the task saw stop_requested() and ended early");
  }
  check(long_task.valid() == false, "get() consumed the future");
  ex.wait_idle();
  check(!report_ran && !quote_ran, "neither the cancelled nor the expired task ever ran");
  return failures == 0 ? 0 : 1;
}
