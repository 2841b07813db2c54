// delayed_and_periodic: run later, and run every period, without holding a worker meanwhile.
//
//   submit(delay 30 ms) ── scheduled ── 30 ms ──▶ runs
//   schedule_every(10 ms) ──▶ run ── run ── run ── ... ── cancel() ── (no more runs)
//
// Delays and periods wait in the executor's timer thread. Periodic runs never overlap; runs
// missed while one was late are skipped. Exits 0 only if the timing and the counts hold.
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
  offload::executor ex{offload::executor_options{.workers = 2}};

  const auto t0 = offload::clock::now();
  auto later = ex.submit(offload::task_options{.delay = 30ms}, [t0] {
    return offload::clock::now() - t0;
  });
  check(later.state() == offload::task_state::scheduled, "a delayed task is scheduled");
  check(later.get() >= 30ms, "and runs no earlier than its delay");

  std::atomic<int> ticks{0};
  offload::periodic_handle heartbeat =
      ex.schedule_every(10ms, offload::task_options{.name = "heartbeat"}, [&ticks] {
        ticks.fetch_add(1);
      });
  while (ticks.load() < 5) std::this_thread::sleep_for(1ms);
  check(heartbeat.cancel(), "cancel() stops the schedule");
  ex.wait_idle();  // a run that had started finishes
  const int after_cancel = ticks.load();
  std::this_thread::sleep_for(40ms);
  check(ticks.load() == after_cancel, "no run starts after cancel()");
  check(!heartbeat.active() && heartbeat.runs() >= 5, "the handle counts the runs");
  std::printf("     %d heartbeats\n", after_cancel);
  return failures == 0 ? 0 : 1;
}
