// lanes: higher lanes go first; a bounded lane refuses work when full.
//
//   one worker, held by a gate task while we queue:
//     low ×5, high ×3 (capacity 2: the third is rejected), critical ×5
//   gate opens ──▶ critical ×5 ──▶ high ×2 ──▶ low ×5
//
// Lower lanes are never starved: every starvation_guard-th pick (default 32) serves a lower lane
// first (docs/guarantees.md, G5). Exits 0 only if the order and the rejection hold.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>

#include <offload/offload.hpp>

using namespace std::chrono_literals;

int main() {
  offload::executor_options options{.workers = 1};
  options.lanes[offload::index_of(offload::lane::high)] = {
      .capacity = 2, .overflow = offload::overflow_policy::reject};
  offload::executor ex{options};

  std::atomic<bool> started{false}, open{false};
  ex.post([&] {
    started = true;
    while (!open) std::this_thread::sleep_for(1ms);
  });
  while (!started) std::this_thread::sleep_for(1ms);  // the only worker is now busy

  std::mutex mutex;
  std::string order;  // one letter per task, in the order they ran
  auto task = [&](char c) {
    return [&, c] {
      std::lock_guard lock(mutex);
      order += c;
    };
  };
  for (int i = 0; i < 5; ++i) ex.post(offload::task_options{.lane = offload::lane::low}, task('l'));
  int rejected = 0;
  for (int i = 0; i < 3; ++i) {
    try {
      ex.post(offload::task_options{.lane = offload::lane::high}, task('h'));
    } catch (const offload::rejected& e) {
      ++rejected;  // the lane holds 2 queued tasks at most
      std::printf("rejected: %s\n", e.what());
    }
  }
  for (int i = 0; i < 5; ++i)
    ex.post(offload::task_options{.lane = offload::lane::critical}, task('c'));

  open = true;
  ex.wait_idle();
  std::printf("order: %s\n", order.c_str());
  const bool ok = order == "ccccchhlllll" && rejected == 1 &&
                  ex.metrics().of(offload::lane::high).rejected == 1;
  std::printf("%s\n", ok ? "ok" : "FAIL");
  return ok ? 0 : 1;
}
