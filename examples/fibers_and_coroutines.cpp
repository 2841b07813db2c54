// fibers_and_coroutines: a task that waits inside a worker suspends; the worker runs other work.
//
//   one worker:
//     100 tasks ──this_task::sleep_for(50 ms)──▶ all asleep at once ──▶ done in ~50 ms, not 5 s
//     100 tasks ──lock a task_mutex, yield while holding it, add──▶ counter == 100 × 100
//     8 tasks ──manual_reset_event::wait()──▶ suspended; a task queued after them sets it
//     task<int> ──co_await future──▶ ──co_await offload::sleep_for──▶ co_return 42
//
// With executor_options::fibers = false each of these waits would hold the only worker: the
// sleeps would take 5 s and the event would never be set. docs/fibers.md says when to use plain
// tasks, blocking-style waits or coroutines. Exits 0 only if everything above holds.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <vector>

#include <offload/offload.hpp>

using namespace std::chrono_literals;

namespace {

// A coroutine: each co_await suspends it without holding the worker, and it continues as a task
// in its lane. (Submitted, it is driven by a task whose fiber waits meanwhile: docs/fibers.md.)
offload::task<int> add_later(offload::executor& ex, int a) {
  offload::future<int> b = ex.submit([] {
    return 2;
  });
  const int got = co_await std::move(b);
  co_await offload::sleep_for(10ms);
  co_return a + got;
}

}  // namespace

int main() {
  offload::executor ex{offload::executor_options{.workers = 1}};
  bool ok = true;

  // 1. Sleeps: each sleeping task's fiber waits on the executor's timer, not the worker.
  const auto start = std::chrono::steady_clock::now();
  std::vector<offload::future<void>> sleepers;
  for (int i = 0; i < 100; ++i) {
    sleepers.push_back(ex.submit([] {
      offload::this_task::sleep_for(50ms);
    }));
  }
  for (auto& f : sleepers) f.get();
  const auto took = std::chrono::steady_clock::now() - start;
  std::printf(
      "100 sleeps of 50 ms on one worker: %lld ms (one after another: 5000 ms)\n",
      static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));
  ok = ok && took < 1s;

  // 2. task_mutex: a task that finds it held suspends. (A std::mutex here would be locked twice
  // by the one worker thread: a deadlock.)
  offload::task_mutex mutex;
  long counter = 0;  // guarded by mutex
  std::vector<offload::future<void>> adders;
  for (int t = 0; t < 100; ++t) {
    adders.push_back(ex.submit([&] {
      for (int r = 0; r < 100; ++r) {
        std::lock_guard lock(mutex);
        const long seen = counter;
        if (r % 10 == 0)
          offload::this_task::yield();  // other tasks run (and queue on the mutex) meanwhile
        counter = seen + 1;
      }
    }));
  }
  for (auto& f : adders) f.get();
  std::printf("counter: %ld\n", counter);
  ok = ok && counter == 100 * 100;

  // 3. manual_reset_event: the waiters suspend, so the task that sets it gets the worker.
  offload::manual_reset_event go;
  std::atomic<int> released{0};
  std::vector<offload::future<void>> waiters;
  for (int i = 0; i < 8; ++i) {
    waiters.push_back(ex.submit([&] {
      go.wait();
      released.fetch_add(1);
    }));
  }
  ex.post([&] {
    go.set();  // runs on the same, only worker, after the 8 waiters started
  });
  for (auto& f : waiters) f.get();
  std::printf("released: %d\n", released.load());
  ok = ok && released.load() == 8;

  // 4. A coroutine submitted like any task: fn returns task<int>, submit gives future<int>.
  offload::future<int> sum = ex.submit([&ex] {
    return add_later(ex, 40);
  });
  const int value = sum.get();
  std::printf("coroutine: %d\n", value);
  ok = ok && value == 42;

  std::printf("%s\n", ok ? "ok" : "FAIL");
  return ok ? 0 : 1;
}
