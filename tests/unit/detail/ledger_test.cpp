// The pool's ledger and producer gate on their own.
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <offload/detail/pool/ledger.hpp>
#include <offload/detail/pool/producers.hpp>

namespace {

using offload::detail::pool_phase;

TEST(Ledger, CountsFromManyThreadsAddUp) {
  offload::detail::ledger ledger;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10'000; ++i) {
        ledger.resolve(static_cast<std::size_t>(t), offload::task_outcome::cancelled);
        ledger.count_taken(static_cast<std::size_t>(t), i % 2 == 0);
      }
    });
  }
  for (auto& t : threads) t.join();
  std::uint64_t total = 0;
  for (std::size_t l = 0; l < offload::k_lane_count; ++l) {
    for (std::size_t o = 0; o < offload::k_outcome_count; ++o) total += ledger.resolved(l, o);
  }
  EXPECT_EQ(total, 40'000u);
  for (std::size_t l = 0; l < offload::k_lane_count; ++l) {
    EXPECT_EQ(ledger.resolved(l, static_cast<std::size_t>(offload::task_outcome::cancelled)),
              10'000u);
    EXPECT_EQ(ledger.taken(l), 10'000u);
    EXPECT_EQ(ledger.retried(l), 5'000u);
  }
}

TEST(Ledger, WaitForCallersReturnsOnlyOnceEveryCallerEnded) {
  offload::detail::ledger ledger;
  ledger.caller_began();
  ledger.caller_began();
  std::atomic<bool> returned{false};
  std::thread waiter([&] {
    ledger.wait_for_callers();
    returned = true;
  });
  ledger.caller_ended();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(returned.load());
  ledger.caller_ended();
  waiter.join();
  EXPECT_TRUE(returned.load());
}

TEST(ProducerGate, AdmitsByPhaseAndShutdownWaitsOutAnAdmittedProducer) {
  offload::detail::lane_inboxes inboxes;
  offload::detail::producer_registry registry(inboxes);
  std::atomic<pool_phase> phase{pool_phase::running};
  offload::detail::producer& p = registry.local();
  EXPECT_EQ(&p, &registry.local());  // cached per thread

  ASSERT_TRUE(p.enter(phase));
  std::atomic<bool> left{false};
  std::thread shutdown([&] {
    phase.store(pool_phase::draining, std::memory_order_seq_cst);
    registry.wait_out();
    EXPECT_TRUE(left.load());  // wait_out() returned only after leave()
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  left = true;
  p.leave();
  shutdown.join();

  EXPECT_FALSE(p.enter(phase));       // draining: new submissions refused
  EXPECT_TRUE(p.enter(phase, true));  // a continuation of accepted work: admitted
  p.leave();
  phase = pool_phase::stopped;
  EXPECT_FALSE(p.enter(phase, true));
  EXPECT_THROW(p.refuse_shut_down(0), offload::rejected);
  std::array<offload::lane_metrics, offload::k_lane_count> lanes{};
  registry.add_counts(lanes);
  EXPECT_EQ(lanes[0].rejected, 1u);
}

}  // namespace
