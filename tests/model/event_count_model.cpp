// Relacy model check of offload::detail::basic_event_count (the production template with Relacy
// atomics and a futex model): a waiter that re-checks after prepare_wait() never sleeps through
// a notify, even when the condition is published with relaxed stores. A lost wake-up leaves a
// thread blocked forever, which Relacy reports as a deadlock.

// relacy_adapter.hpp must follow offload's headers: Relacy #defines memory_order_* and
// new/delete, which must not reach the offload headers.
// clang-format off
#include <offload/detail/event_count.hpp>
#include "relacy_adapter.hpp"
// clang-format on

namespace {

using event_count =
    offload::detail::basic_event_count<offload_model::atomic, offload_model::model_platform>;

// The worker loop's protocol: look for work; if none, prepare, look again, then commit.
template <class Take>
void wait_for_item(event_count& ec, Take take) {
  for (;;) {
    if (take())
      return;
    auto key = ec.prepare_wait();
    if (take()) {
      ec.cancel_wait();
      return;
    }
    ec.commit_wait(key);
  }
}

// One producer, one consumer.
struct single_test : rl::test_suite<single_test, 2> {
  event_count* ec = nullptr;
  offload_model::atomic<int>* items = nullptr;
  rl::mutex mutex;
  rl::condition_variable cv;

  void before() {
    offload_model::model_platform::mutex = &mutex;
    offload_model::model_platform::cv = &cv;
    ec = new event_count;
    items = new offload_model::atomic<int>(0);
  }
  void thread(unsigned index) {
    if (index == 0) {
      items->store(1, std::memory_order::relaxed);  // the weakest publication offload relies on
      ec->notify_one();
    } else {
      wait_for_item(*ec, [&] {
        return items->load(std::memory_order::relaxed) == 1;
      });
    }
  }
  void after() {
    delete items;
    delete ec;
  }
};

// Two producers and two consumers, notify_one each: both consumers get an item.
struct pairs_test : rl::test_suite<pairs_test, 4> {
  event_count* ec = nullptr;
  offload_model::atomic<int>* items = nullptr;
  rl::mutex mutex;
  rl::condition_variable cv;

  void before() {
    offload_model::model_platform::mutex = &mutex;
    offload_model::model_platform::cv = &cv;
    ec = new event_count;
    items = new offload_model::atomic<int>(0);
  }
  bool take() {
    int n = items->load(std::memory_order::relaxed);
    while (n > 0) {
      if (items->compare_exchange_weak(
              n, n - 1, std::memory_order::acquire, std::memory_order::relaxed)) {
        return true;
      }
    }
    return false;
  }
  void thread(unsigned index) {
    if (index < 2) {
      items->fetch_add(1, std::memory_order::release);
      ec->notify_one();
    } else {
      wait_for_item(*ec, [&] {
        return take();
      });
    }
  }
  void after() {
    RL_ASSERT(items->load(std::memory_order::relaxed) == 0);
    delete items;
    delete ec;
  }
};

}  // namespace

int main() {
  rl::test_params p;
  p.search_type = rl::fair_full_search_scheduler_type;
  p.iteration_count = 0;
  if (!rl::simulate<single_test>(p))
    return 1;
  p.search_type = rl::random_scheduler_type;
  p.iteration_count = 300000;
  if (!rl::simulate<pairs_test>(p))
    return 1;
  return 0;
}
