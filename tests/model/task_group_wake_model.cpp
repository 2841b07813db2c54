// Relacy model check of task_group's fiber-waiter protocol (include/offload/task_group.hpp:
// finish_one() [G2] [G6], wait_in_worker()'s arm [G5] [G7] [G8]), transcribed with the same
// memory orders: a suspended waiter is resumed exactly once, and only once the count is 0 or when
// another waiter already holds the slot (it then helps instead). Keep in sync with task_group.hpp.
// Checked to catch the race a review found: taking the record before clearing the mark in
// finish_one() makes second_waiter_test fail (waiter 2 is never resumed).

// clang-format off
#include <cstdint>
#include "relacy_adapter.hpp"
// clang-format on

namespace {

constexpr std::uint32_t k_fiber = 0x4000'0000u;
constexpr std::uint32_t k_count = ~(0x8000'0000u | k_fiber);

struct group_model {
  offload_model::atomic<std::uint32_t> state{0};
  offload_model::atomic<int> waiter{0};      // 0: none; else the waiting fiber's id
  offload_model::atomic<int> wakes[3];       // resumptions per waiter id (1, 2)
  offload_model::atomic<int> woke_early[3];  // resumed while tasks were pending

  group_model() {
    for (int i = 0; i < 3; ++i) {
      wakes[i].store(0, std::memory_order::relaxed);
      woke_early[i].store(0, std::memory_order::relaxed);
    }
  }

  void make_ready(int id, bool count_zero) {
    wakes[id].fetch_add(1, std::memory_order::relaxed);
    if (!count_zero)
      woke_early[id].fetch_add(1, std::memory_order::relaxed);
  }

  void run() { state.fetch_add(1, std::memory_order::relaxed); }

  void finish_one() {
    const std::uint32_t prev = state.fetch_sub(1, std::memory_order::acq_rel);  // [G2]
    if ((prev & k_count) != 1)
      return;
    int w = 0;
    if ((prev & k_fiber) != 0) {
      state.fetch_and(~k_fiber, std::memory_order::relaxed);
      w = waiter.exchange(0, std::memory_order::acq_rel);  // [G6]
    }
    if (w != 0)
      make_ready(w, true);
  }

  /// The arm of a fiber `id` that found tasks pending; returns false if another waiter held the
  /// slot (resumed at once: it helps instead).
  void arm(int id) {
    int none = 0;
    if (!waiter.compare_exchange_strong(none,
                                        id,
                                        std::memory_order::acq_rel,
                                        std::memory_order::acquire)) {  // [G7]
      make_ready(id, true);  // counts as expected: the waiter helps, it does not sleep
      return;
    }
    const std::uint32_t prev = state.fetch_or(k_fiber, std::memory_order::acq_rel);  // [G5]
    if ((prev & k_count) == 0) {
      state.fetch_and(~k_fiber, std::memory_order::relaxed);
      if (waiter.exchange(0, std::memory_order::acq_rel) != 0)  // [G8]
        make_ready(id, true);
    }
  }
};

// Two tasks finish while one waiter arms: it is resumed exactly once, never early.
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
      g->arm(1);
  }
  void after() {
    RL_ASSERT(g->wakes[1].load(std::memory_order::relaxed) == 1);
    RL_ASSERT(g->woke_early[1].load(std::memory_order::relaxed) == 0);
    RL_ASSERT((g->state.load(std::memory_order::relaxed) & k_count) == 0);
    delete g;
  }
};

// The race a review found: waiter 1 is armed on the last task; while its finisher runs, another
// thread runs a new task, waiter 2 arms, and the new task finishes. Each waiter is resumed
// exactly once (a second waiter may be resumed at once to help, while the slot is taken).
struct second_waiter_test : rl::test_suite<second_waiter_test, 2> {
  group_model* g = nullptr;
  void before() {
    g = new group_model;
    g->run();
    g->arm(1);  // count 1: armed and suspended
    RL_ASSERT(g->wakes[1].load(std::memory_order::relaxed) == 0);
  }
  void thread(unsigned index) {
    if (index == 0) {
      g->finish_one();
    } else {
      g->run();
      g->arm(2);
      g->finish_one();
    }
  }
  void after() {
    RL_ASSERT(g->wakes[1].load(std::memory_order::relaxed) == 1);
    RL_ASSERT(g->wakes[2].load(std::memory_order::relaxed) == 1);
    RL_ASSERT(g->woke_early[1].load(std::memory_order::relaxed) == 0);
    RL_ASSERT(g->waiter.load(std::memory_order::relaxed) == 0);
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
  if (!rl::simulate<second_waiter_test>(p))
    return 1;
  return 0;
}
