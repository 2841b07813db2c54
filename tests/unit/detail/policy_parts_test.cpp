// The policy layer's parts on their own: plan interning, the key table, the dead-letter store.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <offload/clock.hpp>
#include <offload/detail/policy/dead_letter_store.hpp>
#include <offload/detail/policy/key_table.hpp>
#include <offload/detail/policy/plan_table.hpp>

namespace {

using namespace std::chrono_literals;
using offload::detail::text_ref;

text_ref text(const char* s) {
  return text_ref::adopt(new offload::detail::shared_text(s));
}

TEST(PlanTable, OneShareablePolicyIsInternedOnce) {
  offload::detail::plan_table plans;
  const offload::task_options o{.retry = offload::retry_policy{.max_attempts = 3}};
  const text_ref name = text("resize");
  auto a = plans.plan_for(o, offload::lane::normal, name, {}, 0, nullptr);
  auto b = plans.plan_for(o, offload::lane::normal, name, {}, 0, nullptr);
  EXPECT_EQ(a.get(), b.get());
  EXPECT_EQ(a->home, nullptr);  // interned: not freed with a task
  EXPECT_EQ(plans.size(), 1u);
  // Another lane, name or policy is another plan.
  auto c = plans.plan_for(o, offload::lane::high, name, {}, 0, nullptr);
  auto d = plans.plan_for(o, offload::lane::normal, text("other"), {}, 0, nullptr);
  const offload::task_options o4{.retry = offload::retry_policy{.max_attempts = 4}};
  auto e = plans.plan_for(o4, offload::lane::normal, name, {}, 0, nullptr);
  EXPECT_NE(c.get(), a.get());
  EXPECT_NE(d.get(), a.get());
  EXPECT_NE(e.get(), a.get());
  EXPECT_EQ(plans.size(), 4u);
  EXPECT_EQ(e->retry.max_attempts, 4u);
}

TEST(PlanTable, PerSubmissionDataGetsAPlanOfItsOwn) {
  offload::detail::plan_table plans;
  const offload::task_options with_deadline{.deadline = offload::clock::now() + 1h};
  auto a = plans.plan_for(with_deadline, offload::lane::normal, {}, {}, 0, nullptr);
  auto b = plans.plan_for(with_deadline, offload::lane::normal, {}, {}, 0, nullptr);
  EXPECT_NE(a.get(), b.get());
  EXPECT_NE(a->home, nullptr);
  const offload::task_options plain{.retry = offload::retry_policy{.max_attempts = 2}};
  auto keyed = plans.plan_for(plain, offload::lane::normal, {}, text("k"), 7, nullptr);
  EXPECT_EQ(keyed->key_ticket, 7u);
  EXPECT_EQ(plans.size(), 0u);
}

TEST(PlanTable, BeyondItsBoundEachSubmissionGetsItsOwnPlan) {
  offload::detail::plan_table plans;
  std::vector<text_ref> names;
  for (std::size_t i = 0; i < offload::detail::plan_table::k_max_interned + 10; ++i) {
    names.push_back(text(std::to_string(i).c_str()));
    (void)plans.plan_for(offload::task_options{.retry = offload::retry_policy{.max_attempts = 2}},
                         offload::lane::normal,
                         names.back(),
                         {},
                         0,
                         nullptr);
  }
  EXPECT_EQ(plans.size(), offload::detail::plan_table::k_max_interned);
}

TEST(KeyTable, AnEntryIsErasedOnlyByItsTicketAndItsLastFollower) {
  offload::detail::key_table keys;
  int released = 0;
  std::uint64_t ticket = 0;
  const text_ref k = text("report-42");
  {
    offload::detail::scoped_lock lock(keys.mutex());
    EXPECT_EQ(keys.find("report-42"), nullptr);
    ticket = keys.next_ticket();
    keys.insert({k,
                 ticket,
                 nullptr,
                 &typeid(void),
                 [&] {
                   ++released;
                 },
                 2});
    ASSERT_NE(keys.find("report-42"), nullptr);
  }
  EXPECT_FALSE(keys.erase(k.get(), ticket + 1, false));  // a later holder's ticket: not this one
  EXPECT_FALSE(keys.erase(k.get(), ticket, true));       // one of two followers left
  EXPECT_EQ(keys.size(), 1u);
  EXPECT_TRUE(keys.erase(k.get(), ticket, true));  // the last follower
  EXPECT_EQ(released, 1);
  EXPECT_EQ(keys.size(), 0u);
  EXPECT_FALSE(keys.erase(k.get(), ticket, false));  // gone already
  EXPECT_FALSE(keys.erase(nullptr, 0, false));
}

TEST(KeyTable, ConcurrentErasesReleaseOnce) {
  for (int round = 0; round < 200; ++round) {
    offload::detail::key_table keys;
    std::atomic<int> released{0};
    const text_ref k = text("k");
    {
      offload::detail::scoped_lock lock(keys.mutex());
      keys.insert({k,
                   keys.next_ticket(),
                   nullptr,
                   &typeid(void),
                   [&] {
                     ++released;
                   },
                   1});
    }
    std::atomic<int> erased{0};
    std::thread a([&] {
      erased += keys.erase(k.get(), 1, false) ? 1 : 0;
    });
    std::thread b([&] {
      erased += keys.erase(k.get(), 1, true) ? 1 : 0;
    });
    a.join();
    b.join();
    EXPECT_EQ(erased.load(), 1);
    EXPECT_EQ(released.load(), 1);
  }
}

offload::dead_letter record(std::string name, offload::clock::time_point at) {
  offload::dead_letter d;
  d.name = std::move(name);
  d.first_failure = d.last_failure = at;
  return d;
}

TEST(DeadLetterStore, KeepsTheNewestWithinCountAndAgeAndCallsTheHook) {
  auto clock = std::make_shared<offload::manual_clock>();
  std::vector<std::uint64_t> hooked;
  offload::detail::dead_letter_store store(
      offload::dead_letter_options{.max_count = 3, .max_age = 10s},
      [&](const offload::dead_letter& d) {
        hooked.push_back(d.id);
      },
      clock);
  for (const char* name : {"t0", "t1", "t2", "t3", "t4"})
    store.add_dead_letter(record(name, clock->now()));
  auto kept = store.snapshot();
  ASSERT_EQ(kept.size(), 3u);
  EXPECT_EQ(kept.front().name, "t2");
  EXPECT_EQ(kept.back().id, 5u);
  EXPECT_EQ(hooked, (std::vector<std::uint64_t>{1, 2, 3, 4, 5}));
  clock->advance(11s);
  EXPECT_TRUE(store.snapshot().empty());
}

TEST(DeadLetterStore, IsBoundedByBytes) {
  offload::detail::dead_letter_store store(
      offload::dead_letter_options{.max_count = 1000, .max_bytes = 4096}, {}, nullptr);
  for (int i = 0; i < 100; ++i) {
    auto d = record(std::string(200, 'x'), offload::clock::now());
    store.add_dead_letter(std::move(d));
  }
  EXPECT_LT(store.size(), 100u);
  EXPECT_GT(store.size(), 0u);
}

TEST(DeadLetterStore, ARecordTakenForReplayGoesBackInItsPlace) {
  offload::detail::dead_letter_store store(offload::dead_letter_options{}, {}, nullptr);
  for (const char* name : {"t0", "t1", "t2"}) {
    auto d = record(name, offload::clock::now());
    d.replay = std::make_shared<offload::detail::replayable_callable<int (*)()>>(+[] {
      return 1;
    });
    store.add_dead_letter(std::move(d));
  }
  auto taken = store.take_replayable(2);
  ASSERT_TRUE(taken);
  EXPECT_EQ(taken->name, "t1");
  EXPECT_FALSE(store.take_replayable(2));  // taken at most once
  EXPECT_EQ(store.size(), 2u);
  store.put_back(std::move(*taken));
  const auto kept = store.snapshot();
  ASSERT_EQ(kept.size(), 3u);
  EXPECT_EQ(kept[1].id, 2u);
}

}  // namespace
