// Relacy model check of the multi-producer, single-consumer intrusive stack used twice in
// offload: a worker's ready stack of woken fibers (fiber_wake_list::make_ready() [F1] in
// include/offload/detail/fiber_wake.hpp / fiber_runtime::take_ready() [F2] in
// include/offload/detail/fiber.hpp) and block_pool's remote free list ([R1] / [R2] in
// include/offload/detail/block_pool.hpp). Producers push with a release CAS; the owner takes the
// whole stack with an acquire exchange and never pops single nodes, so there is no ABA. Checked:
// every pushed node is taken exactly once, and what its producer wrote before pushing is seen by
// the owner. Transcribed with the same memory orders; keep in sync.

// clang-format off
#include "relacy_adapter.hpp"
// clang-format on

namespace {

struct node {
  rl::var<int> payload;  // plain data written by the producer before the push
  node* next = nullptr;
};

struct mpsc_stack_test : rl::test_suite<mpsc_stack_test, 3> {
  static constexpr int k_per_producer = 2;
  offload_model::atomic<node*> head{nullptr};
  node nodes[2 * k_per_producer];
  int taken[2 * k_per_producer] = {};

  void push(node* n) {
    node* h = head.load(std::memory_order::relaxed);
    do {
      n->next = h;
    } while (!head.compare_exchange_weak(h,
                                         n,
                                         std::memory_order::release,  // [F1] / [R1]
                                         std::memory_order::relaxed));
  }

  void thread(unsigned index) {
    if (index < 2) {
      for (int i = 0; i < k_per_producer; ++i) {
        node& n = nodes[index * k_per_producer + i];
        n.payload($) = static_cast<int>(index * k_per_producer + i) + 100;
        push(&n);
      }
      return;
    }
    // The owner takes everything pushed so far, a few times.
    for (int round = 0; round < 3; ++round) {
      node* list = head.exchange(nullptr, std::memory_order::acquire);  // [F2] / [R2]
      while (list != nullptr) {
        const int id = static_cast<int>(list - nodes);
        RL_ASSERT(list->payload($) == id + 100);  // the producer's write is visible
        ++taken[id];
        list = list->next;
      }
    }
  }

  void after() {
    node* rest = head.load(std::memory_order::relaxed);
    while (rest != nullptr) {
      ++taken[rest - nodes];
      rest = rest->next;
    }
    for (int t : taken) RL_ASSERT(t == 1);  // each node taken (or left) exactly once
  }
};

}  // namespace

int main() {
  rl::test_params p;
  p.search_type = rl::random_scheduler_type;
  p.iteration_count = 200000;
  return rl::simulate<mpsc_stack_test>(p) ? 0 : 1;
}
