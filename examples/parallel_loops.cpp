// parallel_loops: the loop and bulk tools users know from oneTBB, Taskflow and folly.
//
//   offload::parallel_for        oneTBB parallel_for, Taskflow for_each_index
//   executor::post_bulk          TooManyCooks post_bulk, BS::thread_pool detach_loop
//   future::share()              std::shared_future, folly SharedPromise
//   this_task::executor()        Taskflow's Runtime, oneTBB's implicit arena
//   task_group::cancel()         oneTBB task_group::cancel
//
// Checks what it shows and exits 1 if something does not hold.
#include <atomic>
#include <cstdio>
#include <numeric>
#include <thread>
#include <vector>

#include <offload/offload.hpp>

namespace {

bool check(bool ok, const char* what) {
  std::printf("%-58s %s\n", what, ok ? "ok" : "FAILED");
  return ok;
}

// Recursive code without an executor& parameter: the group finds the running one.
long sum_range(const std::vector<int>& v, std::size_t lo, std::size_t hi) {
  if (hi - lo < 10'000)
    return std::accumulate(
        v.begin() + static_cast<long>(lo), v.begin() + static_cast<long>(hi), 0L);
  long left = 0;
  offload::task_group g;  // this_task::executor()
  g.run([&] {
    left = sum_range(v, lo, lo + (hi - lo) / 2);
  });
  const long right = sum_range(v, lo + (hi - lo) / 2, hi);
  g.wait();
  return left + right;
}

}  // namespace

int main() {
  offload::executor ex;
  bool ok = true;

  // A loop over a range: no grain size, work stealing splits it.
  std::vector<int> v(1'000'000);
  offload::parallel_for(ex, std::size_t{0}, v.size(), [&](std::size_t i) {
    v[i] = static_cast<int>(i % 7);
  });
  offload::parallel_for(ex, v, [](int& x) {
    x += 1;
  });
  ok &= check(std::accumulate(v.begin(), v.end(), 0L) == 4'000'000L - 3,
              "parallel_for over indices, then over the elements");

  // A million fire-and-forget calls as one submission.
  std::atomic<long> calls{0};
  ex.post_bulk(1'000'000, [&](std::size_t) {
    calls.fetch_add(1, std::memory_order_relaxed);
  });
  ex.wait_idle();
  ok &= check(calls.load() == 1'000'000, "post_bulk(10^6) ran every call once");

  // One result, read by 1000 tasks; each waits without holding a worker.
  offload::shared_future<int> config = ex.submit([] {
                                           return 42;
                                         }).share();
  std::atomic<long> seen{0};
  offload::parallel_for(ex, 0, 1000, [&](int) {
    seen.fetch_add(config.get(), std::memory_order_relaxed);
  });
  ok &= check(seen.load() == 42'000, "1000 readers of one shared_future");

  ok &= check(ex.submit([&] {
                  return sum_range(v, 0, v.size());
                }).get() == 4'000'000L - 3,
              "task_group() on this_task::executor(), recursively");

  // Cancelling a group: running tasks see stop_requested(), queued ones never run.
  offload::task_group g{ex};
  std::atomic<int> stopped{0}, ran{0};
  for (unsigned w = 0; w < ex.worker_count(); ++w)
    g.run([&] {  // holds a worker until the group is cancelled
      while (!offload::this_task::stop_requested()) std::this_thread::yield();  // the worker too
      stopped.fetch_add(1);
    });
  for (int i = 0; i < 10'000; ++i)
    g.run([&] {
      ran.fetch_add(1, std::memory_order_relaxed);
    });
  g.cancel();
  bool threw = false;
  try {
    g.wait();
  } catch (const offload::cancelled&) {
    threw = true;
  }
  ok &= check(threw && ran.load() == 0, "task_group::cancel(): queued tasks never ran");
  return ok ? 0 : 1;
}
