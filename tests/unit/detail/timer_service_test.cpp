// The timer on its own, on a manual clock: due order, owned entries taken back, the two steps of
// stopping, and the counts metrics() reads.
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <vector>

#include "unit/test_support.hpp"
#include <gtest/gtest.h>

#include <offload/clock.hpp>
#include <offload/detail/task_node.hpp>
#include <offload/detail/timer_service.hpp>

namespace {

using namespace std::chrono_literals;
using offload::detail::task_node;
using offload::detail::timer_kind;

/// A start node that records its id when fired, run or discarded.
struct marked {
  int id;
  std::vector<int>* ran;
  void operator()() const { ran->push_back(id); }
};

struct fixture {
  std::shared_ptr<offload::manual_clock> clock = std::make_shared<offload::manual_clock>();
  std::mutex mutex;
  std::vector<int> fired;  // ids of start nodes handed to `fire`, in order
  offload::detail::timer_service timers{clock,
                                        [this](task_node* n) {
                                          std::vector<int> ran;
                                          offload::detail::task_model<marked>::get(n)->ran = &ran;
                                          (void)offload::detail::run_task(n);
                                          std::lock_guard lock(mutex);
                                          fired.insert(fired.end(), ran.begin(), ran.end());
                                        },
                                        nullptr};
  std::vector<int> unused;

  task_node* node(int id) { return offload::detail::make_task(marked{id, &unused}); }
  std::size_t fired_count() {
    std::lock_guard lock(mutex);
    return fired.size();
  }
};

TEST(TimerService, FiresStartEntriesInDueOrderOnceTheClockReachesThem) {
  fixture f;
  const auto t0 = f.clock->now();
  ASSERT_TRUE(f.timers.schedule(t0 + 30ms, f.node(3), timer_kind::start, false));
  ASSERT_TRUE(f.timers.schedule(t0 + 10ms, f.node(1), timer_kind::start, false));
  ASSERT_TRUE(f.timers.schedule(t0 + 20ms, f.node(2), timer_kind::start, true));
  EXPECT_EQ(f.timers.pending(), 3u);
  f.clock->advance(15ms);
  offload_test::eventually([&] {
    return f.fired_count() == 1;
  });
  f.clock->advance(20ms);
  offload_test::eventually([&] {
    return f.fired_count() == 3;
  });
  EXPECT_EQ(f.fired, (std::vector<int>{1, 2, 3}));
  const auto counts = f.timers.read_counts();
  const std::size_t normal = offload::index_of(offload::lane::normal);
  EXPECT_EQ(counts.in_delay[normal], 2u);
  EXPECT_EQ(counts.in_retry[normal], 1u);
  EXPECT_EQ(counts.fired[normal], 3u);
  f.timers.stop([](task_node* n) {
    offload::detail::discard_task(n, offload::detail::discard_reason::shutdown);
  });
}

TEST(TimerService, AnOwnedEntryIsTakenBackUntilItIsDue) {
  fixture f;
  int owner = 0;
  const auto t0 = f.clock->now();
  ASSERT_TRUE(f.timers.schedule(t0 + 1h, f.node(7), timer_kind::start, false, &owner));
  task_node* back = f.timers.remove_owned(&owner, timer_kind::start);
  ASSERT_NE(back, nullptr);
  EXPECT_EQ(f.timers.remove_owned(&owner, timer_kind::start), nullptr);  // once
  EXPECT_EQ(f.timers.pending(), 0u);
  offload::detail::discard_task(back, offload::detail::discard_reason::shutdown);
  // The owner may hold a new entry of the kind once the old one is gone.
  ASSERT_TRUE(f.timers.schedule(t0 + 1ms, f.node(8), timer_kind::start, false, &owner));
  f.clock->advance(2ms);
  offload_test::eventually([&] {
    return f.fired_count() == 1;
  });
  EXPECT_EQ(f.timers.remove_owned(&owner, timer_kind::start), nullptr);  // due: too late
  f.timers.stop([](task_node* n) {
    offload::detail::discard_task(n, offload::detail::discard_reason::shutdown);
  });
}

TEST(TimerService, StoppingStartsHandsThemBackAndRefusesNewOnes) {
  fixture f;
  const auto t0 = f.clock->now();
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(f.timers.schedule(t0 + 1h, f.node(i), timer_kind::start, false));
  int resolved = 0;
  f.timers.stop_starts([&](task_node* n) {
    ++resolved;
    offload::detail::discard_task(n, offload::detail::discard_reason::shutdown);
  });
  EXPECT_EQ(resolved, 5);
  task_node* late = f.node(9);
  EXPECT_FALSE(f.timers.schedule(t0 + 1ms, late, timer_kind::start, false));
  offload::detail::discard_task(late, offload::detail::discard_reason::shutdown);
  f.timers.stop([](task_node* n) {
    offload::detail::discard_task(n, offload::detail::discard_reason::shutdown);
  });
  task_node* after = f.node(10);
  EXPECT_FALSE(f.timers.schedule(t0 + 1ms, after, timer_kind::inline_, false));  // stopped
  offload::detail::discard_task(after, offload::detail::discard_reason::shutdown);
  EXPECT_EQ(f.fired_count(), 0u);
}

}  // namespace
