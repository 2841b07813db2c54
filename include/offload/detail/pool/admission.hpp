#pragma once

/// @file admission.hpp
/// @brief admission: the slots of the bounded lanes, and what a submission from outside the pool
/// meets when its lane is full (reject, a bounded wait, or caller_runs).

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "offload/detail/atomic.hpp"
#include "offload/detail/event_count.hpp"
#include "offload/detail/pool/phase.hpp"
#include "offload/detail/pool/producers.hpp"
#include "offload/detail/task_node.hpp"
#include "offload/error.hpp"
#include "offload/executor_options.hpp"
#include "offload/lane.hpp"

namespace offload::detail {

/// Slots are taken by submitters outside the pool (reserve()) and given back by the worker that
/// takes the task (release()); tasks spawned inside the pool never take one. Thread-safe.
class admission {
 public:
  /// `lanes`: the pool's lane options, which outlive this object.
  explicit admission(const std::array<lane_options, k_lane_count>& lanes) noexcept
      : m_options(lanes) {
    for (std::size_t l = 0; l < k_lane_count; ++l)
      m_limits[l].bounded = lanes[l].capacity != lane_options::unbounded;
  }

  bool bounded(std::size_t l) const noexcept { return m_limits[l].bounded; }

  enum class verdict { taken, run_here };

  /// Takes a slot of the task's bounded lane, applying the lane's overflow policy when it is
  /// full: `taken` (the node holds a slot now), `run_here` (caller_runs: the caller runs it), or
  /// offload::rejected (reject, block timed out, or shutdown began), counted on `p`.
  verdict reserve(producer& p, task_node* node, const std::atomic<pool_phase>& phase) {
    const std::size_t l = index_of(node->lane);
    const lane_options& limits = m_options[l];
    lane_limit& limit = m_limits[l];
    auto try_take = [&] {
      // relaxed: the count is only a bound; blocked submitters are woken through `room`.
      if (limit.waiting.fetch_add(1, std::memory_order_relaxed) < limits.capacity)
        return true;
      limit.waiting.fetch_sub(1, std::memory_order_relaxed);
      return false;
    };
    auto refuse = [&](const char* why) {
      p.lanes[l].rejected.add();
      throw rejected(std::string("offload: lane '") + std::string(to_string(node->lane)) +
                     "' is full (capacity " + std::to_string(limits.capacity) + ")" + why);
    };
    if (try_take()) {
      node->holds_lane_slot = true;
      return verdict::taken;
    }
    if (limits.overflow == overflow_policy::reject)
      refuse("; submission rejected");
    if (limits.overflow == overflow_policy::caller_runs)
      return verdict::run_here;
    const auto deadline = std::chrono::steady_clock::now() + limits.block_timeout;
    for (;;) {
      auto key = limit.room.prepare_wait();
      if (try_take()) {
        limit.room.cancel_wait();
        node->holds_lane_slot = true;
        return verdict::taken;
      }
      const auto now = std::chrono::steady_clock::now();
      // Relaxed: shutdown wakes every blocked submitter after it changed the phase (wake_all()).
      const bool running = phase.load(std::memory_order_relaxed) == pool_phase::running;
      if (now >= deadline || !running) {
        limit.room.cancel_wait();
        if (!running)
          p.refuse_shut_down(l);
        refuse("; no room within block_timeout, submission rejected");
      }
      limit.room.commit_wait(key, deadline - now);
    }
  }

  /// A worker took a task that held a slot of lane l: frees it and wakes a blocked submitter.
  void release(std::size_t l) noexcept {
    m_limits[l].waiting.fetch_sub(1, std::memory_order_relaxed);
    m_limits[l].room.notify_one();
  }

  /// Shutdown began: blocked submitters give up.
  void wake_all() noexcept {
    for (auto& limit : m_limits) limit.room.notify_all();
  }

 private:
  /// One bounded lane's bookkeeping (unused for unbounded lanes).
  struct lane_limit {
    bool bounded = false;
    alignas(k_cache_line) std::atomic<std::uint64_t> waiting{0};  // slots held
    event_count room;  // blocked submitters wait here for a slot
  };

  const std::array<lane_options, k_lane_count>& m_options;
  std::array<lane_limit, k_lane_count> m_limits;
};

}  // namespace offload::detail
