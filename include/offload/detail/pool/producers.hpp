#pragma once

/// @file producers.hpp
/// @brief producer and producer_registry: the threads that submit from outside the pool, each
/// with its queue tokens, its counters and the busy flag that shutdown waits out.

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <concurrentqueue/concurrentqueue.h>

#include "offload/detail/pool/phase.hpp"
#include "offload/detail/thread_annotations.hpp"
#include "offload/detail/thread_cache.hpp"
#include "offload/detail/worker.hpp"
#include "offload/error.hpp"
#include "offload/lane.hpp"
#include "offload/metrics.hpp"

namespace offload::detail {

/// A thread that submits from outside the pool. Everything but `busy` is written by that thread
/// only; `busy` is read by shutdown ([X3]) and the counters by any reader.
struct producer {
  explicit producer(lane_inboxes& q)
      : tokens{moodycamel::ProducerToken(q[0]),
               moodycamel::ProducerToken(q[1]),
               moodycamel::ProducerToken(q[2]),
               moodycamel::ProducerToken(q[3])} {}

  /// The gate a submission passes before the pool may see it: marks this producer busy, then
  /// reads the phase. True if the phase accepts the submission (running; for a `continuation`
  /// of accepted work, anything before stopped): the caller then does its counting and queueing
  /// and calls leave(). False (not busy) if refused.
  bool enter(const std::atomic<pool_phase>& phase, bool continuation = false) noexcept {
    // [X2] seq_cst; pairs with [X1]/[X3] in pool::shutdown(): either this sees the new
    // phase and refuses, or shutdown sees the flag and waits for what this thread queues.
    busy.store(true, std::memory_order_seq_cst);
    const pool_phase now = phase.load(std::memory_order_seq_cst);
    if (continuation ? now != pool_phase::stopped : now == pool_phase::running)
      return true;
    busy.store(false, std::memory_order_relaxed);
    return false;
  }

  /// Ends what enter() admitted.
  void leave() noexcept {
    // [X4] release; pairs with [X3]: shutdown sees what this thread queued and counted once it
    // sees the flag clear.
    busy.store(false, std::memory_order_release);
  }

  /// Counts a submission refused because shutdown began, and throws offload::rejected.
  [[noreturn]] void refuse_shut_down(std::size_t l) {
    lanes[l].rejected.add();
    throw rejected("offload: executor is shut down; submission rejected");
  }

  std::array<moodycamel::ProducerToken, k_lane_count> tokens;
  std::atomic<bool> busy{false};  // set while its thread is between enter() and leave()
  struct lane_counts {
    owned_counter submitted;
    owned_counter rejected;
  };
  std::array<lane_counts, k_lane_count> lanes;
  std::uint32_t timing_tick = 0;  // submissions, for timing samples
  std::thread::id thread;
};

/// Every producer of one pool, registered on a thread's first submission and kept until the
/// pool goes (their counts are part of the pool's totals). Thread-safe.
class producer_registry {
 public:
  explicit producer_registry(lane_inboxes& inboxes) noexcept : m_inboxes(inboxes) {}

  producer_registry(const producer_registry&) = delete;
  producer_registry& operator=(const producer_registry&) = delete;

  /// The calling thread's record (cached per thread: the lock is taken on a thread's first
  /// submission to this pool, or when it submits to more than 4 pools in turn).
  producer& local() {
    if (producer** cached = cache::find(m_uid))
      return **cached;
    producer* found = nullptr;
    {
      scoped_lock lock(m_mutex);
      const auto me = std::this_thread::get_id();
      for (auto& p : m_records) {
        if (p->thread == me)
          found = p.get();
      }
      if (found == nullptr) {
        m_records.push_back(std::make_unique<producer>(m_inboxes));
        found = m_records.back().get();
        found->thread = me;
      }
    }
    cache::put(m_uid, found);
    return *found;
  }

  /// Adds every producer's submitted and rejected counts into `lanes`.
  void add_counts(std::array<lane_metrics, k_lane_count>& lanes) const {
    scoped_lock lock(m_mutex);
    for (const auto& p : m_records) {
      for (std::size_t l = 0; l < k_lane_count; ++l) {
        lanes[l].submitted += p->lanes[l].submitted.read();
        lanes[l].rejected += p->lanes[l].rejected.read();
      }
    }
  }

  /// Shutdown, after the phase left running: waits until no producer is inside the gate.
  void wait_out() const {
    scoped_lock lock(m_mutex);
    for (const auto& p : m_records) {
      // [X3] seq_cst load; pairs with [X2]; the flag's release clear [X4] publishes the enqueue.
      while (p->busy.load(std::memory_order_seq_cst)) std::this_thread::yield();
    }
  }

 private:
  struct cache_tag;
  using cache = thread_cache<cache_tag, producer*, 4>;

  lane_inboxes& m_inboxes;
  const std::uint64_t m_uid = next_cache_uid();
  mutable annotated_mutex m_mutex;  // registering a producer, reading counts, shutdown
  std::vector<std::unique_ptr<producer>> m_records OFFLOAD_GUARDED_BY(m_mutex);
};

}  // namespace offload::detail
