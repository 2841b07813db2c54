// Relacy model check of offload::detail::chase_lev_deque: the production template instantiated
// with Relacy atomics. Checks, over many interleavings and weak-memory outcomes, that every pushed
// value is taken exactly once and that the owner's writes before push() are visible (no data race
// on the payload) to whichever thread takes the value.

// relacy_adapter.hpp must follow offload's headers: Relacy #defines memory_order_* and
// new/delete, which must not reach the offload headers.
// clang-format off
#include <offload/detail/chase_lev_deque.hpp>
#include "relacy_adapter.hpp"
// clang-format on

namespace {

constexpr int k_values = 3;

using deque = offload::detail::chase_lev_deque<int, offload_model::atomic>;

// Thread 0 owns the deque: pushes 3 values (capacity 2, so it grows) and pops twice.
// Threads 1 and 2 steal once each.
struct deque_test : rl::test_suite<deque_test, 3> {
  deque* d = nullptr;
  rl::var<int> payload[k_values];
  int taken_by[3][k_values];

  void before() {
    d = new deque(2);
    for (auto& row : taken_by)
      for (int& c : row) c = 0;
  }

  void take(unsigned thread, int v) {
    RL_ASSERT(v >= 0 && v < k_values);
    RL_ASSERT(payload[v]($) == 100 + v);  // a race here means push did not publish the payload
    ++taken_by[thread][v];
  }

  void thread(unsigned index) {
    if (index == 0) {
      for (int v = 0; v < k_values; ++v) {
        payload[v]($) = 100 + v;
        d->push(v);
      }
      for (int i = 0; i < 2; ++i) {
        if (auto v = d->pop())
          take(0, *v);
      }
    } else {
      auto r = d->steal();
      if (r.status == offload::detail::steal_status::success)
        take(index, r.value);
    }
  }

  void after() {
    while (auto v = d->pop()) take(0, *v);  // single-threaded now: what is left
    for (int v = 0; v < k_values; ++v) {
      const int total = taken_by[0][v] + taken_by[1][v] + taken_by[2][v];
      RL_ASSERT(total == 1);
    }
    delete d;
  }
};

// The last element: owner pop and one thief race for it; exactly one wins.
struct last_element_test : rl::test_suite<last_element_test, 2> {
  deque* d = nullptr;
  int taken[2];
  void before() {
    d = new deque(2);
    taken[0] = taken[1] = 0;
  }
  void thread(unsigned index) {
    if (index == 0) {
      d->push(7);
      if (d->pop())
        taken[0] = 1;
    } else {
      if (d->steal().status == offload::detail::steal_status::success)
        taken[1] = 1;
    }
  }
  void after() {
    const bool left = d->pop().has_value();
    RL_ASSERT(taken[0] + taken[1] + (left ? 1 : 0) == 1);
    delete d;
  }
};

}  // namespace

int main() {
  rl::test_params p;
  p.iteration_count = 200000;
  p.search_type = rl::random_scheduler_type;
  if (!rl::simulate<deque_test>(p))
    return 1;
  p.search_type = rl::fair_full_search_scheduler_type;
  p.iteration_count = 0;
  if (!rl::simulate<last_element_test>(p))
    return 1;
  return 0;
}
