// metrics: what to scrape and what to check. Counters per lane, queue gauges, wait and run
// histograms, worker heartbeats, dead letters; the same snapshot as Prometheus text.
//
//   20 tasks on normal (succeed) + 3 on low (throw) ──▶ ex.metrics() ──▶ to_prometheus()
//                                                    └▶ ex.health()
//
// At idle, per lane: submitted == succeeded + failed + cancelled + expired (+ queued, scheduled,
// running, all 0). Exits 0 only if the counts hold.
#include <atomic>
#include <cstdio>
#include <sstream>
#include <stdexcept>
#include <string>

#include <offload/offload.hpp>

int main() {
  int failures = 0;
  auto check = [&](bool ok, const char* what) {
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", what);
    failures += ok ? 0 : 1;
  };
  std::atomic<int> errors{0};
  offload::executor ex{
      offload::executor_options{.workers = 2, .on_task_error = [&errors](std::exception_ptr) {
                                  errors.fetch_add(1);  // fire-and-forget failures end up here
                                }}};

  for (int i = 0; i < 20; ++i)
    ex.post([] {
      volatile int x = 0;
      for (int k = 0; k < 1000; ++k) x = x + k;
    });
  for (int i = 0; i < 3; ++i)
    ex.post(offload::task_options{.lane = offload::lane::low, .name = "nightly_export"}, [] {
      throw std::runtime_error("disk full");
    });
  ex.wait_idle();

  const offload::metrics_snapshot m = ex.metrics();
  const offload::lane_metrics& normal = m.of(offload::lane::normal);
  const offload::lane_metrics& low = m.of(offload::lane::low);
  check(normal.submitted == 20 && normal.completed_of(offload::task_outcome::succeeded) == 20,
        "normal: 20 submitted, 20 succeeded");
  check(low.submitted == 3 && low.completed_of(offload::task_outcome::failed) == 3,
        "low: 3 submitted, 3 failed");
  check(errors.load() == 3, "on_task_error saw the 3 failures");
  check(normal.queued + normal.running + low.queued + low.running == 0, "nothing left queued");
  check(ex.health().healthy(), "health: every worker alive, none stuck");

  // What a Prometheus scrape sees; alert on failed and rejected rates, queue depth per lane,
  // wait-time quantiles and heartbeat age.
  const std::string text = offload::to_prometheus(m);
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("offload_tasks_submitted_total", 0) == 0 ||
        line.rfind("offload_tasks_completed_total{lane=\"low\"", 0) == 0)
      std::printf("     %s\n", line.c_str());
  }
  check(text.find("offload_tasks_completed_total{lane=\"normal\",outcome=\"succeeded\"} 20") !=
            std::string::npos,
        "the Prometheus text carries the same counts");
  std::printf("     normal wait p99 <= %.6f s\n", normal.wait.quantile_upper_bound_seconds(0.99));
  return failures == 0 ? 0 : 1;
}
