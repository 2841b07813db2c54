// Relacy model check of task_group's protocol for suspended waiters
// (include/offload/task_group.hpp: finish_one() [G2], wait_in_worker()'s arm [G5], the waiter list
// under m_waiters_mutex), transcribed with the same memory orders: every suspended waiter is
// resumed exactly once, never while tasks it waits for are pending, whatever the number of waiters
// and finishers, and also when the group is reused (run() after the count reached 0). Keep in sync
// with task_group.hpp.

// clang-format off
#include <cstdint>
#include "relacy_adapter.hpp"
// clang-format on

namespace {

constexpr std::uint32_t k_fiber = 0x4000'0000u;
constexpr std::uint32_t k_count = ~(0x8000'0000u | k_fiber);
constexpr int k_max_waiters = 4;

struct group_model {
  offload_model::atomic<std::uint32_t> state{0};
  rl::mutex waiters_mutex;
  rl::var<std::uint32_t> listed;  // bit per waiter id in the list; guarded
  offload_model::atomic<int> wakes[k_max_waiters];
  offload_model::atomic<int> woke_early[k_max_waiters];  // resumed while the count was not 0

  group_model() {
    listed($) = 0;
    for (int i = 0; i < k_max_waiters; ++i) {
      wakes[i].store(0, std::memory_order::relaxed);
      woke_early[i].store(0, std::memory_order::relaxed);
    }
  }

  void make_ready(int id) {
    wakes[id].fetch_add(1, std::memory_order::relaxed);
    if ((state.load(std::memory_order::acquire) & k_count) != 0)
      woke_early[id].fetch_add(1, std::memory_order::relaxed);
  }

  void run() { state.fetch_add(1, std::memory_order::relaxed); }

  void finish_one() {
    const std::uint32_t prev = state.fetch_sub(1, std::memory_order::acq_rel);  // [G2]
    if ((prev & k_count) != 1)
      return;
    std::uint32_t list = 0;
    if ((prev & k_fiber) != 0) {
      waiters_mutex.lock($);
      list = listed($);
      listed($) = 0;
      state.fetch_and(~k_fiber, std::memory_order::relaxed);
      waiters_mutex.unlock($);
    }
    for (int id = 0; id < k_max_waiters; ++id) {
      if ((list & (1u << id)) != 0)
        make_ready(id);
    }
  }

  /// The arm of waiter `id`, run once its fiber is suspended (it found the count above 0).
  void arm(int id) {
    bool resume_now = false;
    waiters_mutex.lock($);
    listed($) = listed($) | (1u << id);
    const std::uint32_t prev = state.fetch_or(k_fiber, std::memory_order::acq_rel);  // [G5]
    resume_now = (prev & k_count) == 0;
    if (resume_now) {
      listed($) = listed($) & ~(1u << id);
      if (listed($) == 0)
        state.fetch_and(~k_fiber, std::memory_order::relaxed);
    }
    waiters_mutex.unlock($);
    if (resume_now)
      make_ready(id);
  }

  int wakes_of(int id) { return wakes[id].load(std::memory_order::relaxed); }
};

// Two tasks finish while a waiter arms: it is resumed exactly once, never early.
struct two_finishers_test : rl::test_suite<two_finishers_test, 3> {
  group_model* g = nullptr;
  void before() {
    g = new group_model;
    g->run();
    g->run();
  }
  void thread(unsigned index) {
    if (index < 2)
      g->finish_one();
    else
      g->arm(0);
  }
  void after() {
    RL_ASSERT(g->wakes_of(0) == 1);
    RL_ASSERT(g->woke_early[0].load(std::memory_order::relaxed) == 0);
    RL_ASSERT(g->state.load(std::memory_order::relaxed) == 0);  // no mark left behind
    delete g;
  }
};

// The last task finishes while two waiters arm.
struct two_waiters_test : rl::test_suite<two_waiters_test, 3> {
  group_model* g = nullptr;
  void before() {
    g = new group_model;
    g->run();
  }
  void thread(unsigned index) {
    if (index == 0)
      g->finish_one();
    else
      g->arm(static_cast<int>(index) - 1);
  }
  void after() {
    for (int id = 0; id < 2; ++id) {
      RL_ASSERT(g->wakes_of(id) == 1);
      RL_ASSERT(g->woke_early[id].load(std::memory_order::relaxed) == 0);
    }
    RL_ASSERT(g->state.load(std::memory_order::relaxed) == 0);
    delete g;
  }
};

// Waiter 0 is listed on the last task; while its finisher runs, another thread reuses the group
// (run() again), waiter 1 arms, and the new task finishes. Each is resumed exactly once.
struct reuse_while_finishing_test : rl::test_suite<reuse_while_finishing_test, 2> {
  group_model* g = nullptr;
  void before() {
    g = new group_model;
    g->run();
    g->arm(0);  // count 1: listed and suspended
    RL_ASSERT(g->wakes_of(0) == 0);
  }
  void thread(unsigned index) {
    if (index == 0) {
      g->finish_one();
    } else {
      g->run();
      g->arm(1);
      g->finish_one();
    }
  }
  void after() {
    RL_ASSERT(g->wakes_of(0) == 1);
    RL_ASSERT(g->wakes_of(1) == 1);  // (waiter 0 may see the reused count: it waits again)
    RL_ASSERT(g->state.load(std::memory_order::relaxed) == 0);
    delete g;
  }
};

// Two finishers and two waiters, all concurrent (random schedules: a full search of four
// threads takes minutes).
struct four_threads_test : rl::test_suite<four_threads_test, 4> {
  group_model* g = nullptr;
  void before() {
    g = new group_model;
    g->run();
    g->run();
  }
  void thread(unsigned index) {
    if (index < 2)
      g->finish_one();
    else
      g->arm(static_cast<int>(index) - 2);
  }
  void after() {
    for (int id = 0; id < 2; ++id) {
      RL_ASSERT(g->wakes_of(id) == 1);
      RL_ASSERT(g->woke_early[id].load(std::memory_order::relaxed) == 0);
    }
    RL_ASSERT(g->state.load(std::memory_order::relaxed) == 0);
    delete g;
  }
};

}  // namespace

int main() {
  rl::test_params p;
  p.search_type = rl::fair_full_search_scheduler_type;
  p.iteration_count = 0;
  if (!rl::simulate<two_finishers_test>(p))
    return 1;
  if (!rl::simulate<two_waiters_test>(p))
    return 1;
  if (!rl::simulate<reuse_while_finishing_test>(p))
    return 1;
  rl::test_params r;
  r.iteration_count = 300000;
  if (!rl::simulate<four_threads_test>(r))
    return 1;
  return 0;
}
