#pragma once

/// @file lane_search.hpp
/// @brief pool_search: how a worker finds its next task: own deque, injection queue, stealing,
/// by lane, with the starvation guard and the inbox-fairness check.

#include <cstddef>
#include <cstdint>

#include "offload/detail/pool/pool_state.hpp"
#include "offload/detail/task_node.hpp"
#include "offload/detail/worker.hpp"

namespace offload::detail {

/// Writes only the searching worker's own fields (ticks, picks_to_guard, guard_turn, rng, its
/// steal counter) and takes from deques and inboxes; reads m_lanes_used and m_workers.
class pool_search : public pool_state {
 public:
  using pool_state::pool_state;

 protected:
  ~pool_search() = default;

  static constexpr std::uint32_t k_inbox_interval = 61;  // searches between inbox-first checks
  static constexpr int k_steal_attempts = 2;             // retries of a victim on a lost race

  /// Finds a task for worker w: for each lane from critical down, its own deque (LIFO), the
  /// lane's injection queue, then stealing. Every starvation_guard-th task taken, the search
  /// starts at a lower lane (high, normal, low in turn) instead of critical. Lanes never used are
  /// skipped. The common case is kept small enough to inline into the worker loops.
  task_node* find_task(worker& w) {
    const bool inbox_first = ++w.ticks % k_inbox_interval == 0;
    if (w.picks_to_guard <= 1 || inbox_first)
      return find_task_rare(w, inbox_first);
    const std::uint32_t used = m_lanes_used.load(std::memory_order_relaxed);
    for (std::size_t l = 0; l < k_lane_count; ++l) {
      if ((used & (1u << l)) == 0)
        continue;
      // The owner's empty_hint() is exact when it says empty (only thieves move top, upwards),
      // so the costlier pop() runs only when there is something to pop.
      if (!w.deque(l).empty_hint()) {
        if (auto local = w.deque(l).pop())
          return took(w, *local);
      }
      if (task_node* node = take_remote(w, l, false))
        return took(w, node);
    }
    return nullptr;
  }

 private:
  task_node* took(worker& w, task_node* node) const noexcept {
    if (--w.picks_to_guard == 0)
      w.picks_to_guard = m_options.starvation_guard;
    return node;
  }

  /// find_task() for a starvation-guard pick or an inbox-first round.
  [[gnu::noinline]] task_node* find_task_rare(worker& w, bool inbox_first) {
    const std::uint32_t used = m_lanes_used.load(std::memory_order_relaxed);
    task_node* node = nullptr;
    if (w.picks_to_guard <= 1) {
      // A guard pick: the lanes below critical in rotation, starting one further each time, so
      // that every one of them comes first at least once per 3 guard picks, whether or not the
      // others have work.
      const std::uint32_t turn = w.guard_turn++;
      for (std::uint32_t k = 0; k < k_lane_count - 1 && node == nullptr; ++k) {
        const std::size_t l = 1 + (turn + k) % (k_lane_count - 1);
        if ((used & (1u << l)) != 0)
          node = take_from_lane(w, l, inbox_first);
      }
    }
    for (std::size_t l = 0; l < k_lane_count && node == nullptr; ++l) {
      if ((used & (1u << l)) != 0)
        node = take_from_lane(w, l, inbox_first);
    }
    return node != nullptr ? took(w, node) : nullptr;
  }

  task_node* take_from_lane(worker& w, std::size_t l, bool inbox_first) {
    task_node* node = nullptr;
    if (inbox_first && m_inboxes[l].try_dequeue(w.inbox_tokens[l], node))
      return node;
    if (!w.deque(l).empty_hint()) {
      if (auto local = w.deque(l).pop())
        return *local;
    }
    return take_remote(w, l, inbox_first);
  }

  /// Lane l's injection queue (unless just tried), then stealing.
  [[gnu::noinline]] task_node* take_remote(worker& w, std::size_t l, bool inbox_tried) {
    task_node* node = nullptr;
    if (!inbox_tried && m_inboxes[l].try_dequeue(w.inbox_tokens[l], node))
      return node;
    return steal(w, l);
  }

  task_node* steal(worker& w, std::size_t l) {
    const auto n = static_cast<std::uint32_t>(m_workers.size());
    if (n < 2)
      return nullptr;
    if (!w.steal_order.empty())
      return steal_nearest_first(w, l);
    const std::uint32_t start = w.rng.next() % n;
    for (std::uint32_t i = 0; i < n; ++i) {
      worker& victim = *m_workers[(start + i) % n];
      if (&victim == &w)
        continue;
      if (task_node* node = steal_from(w, victim, l))
        return node;
    }
    return nullptr;
  }

  /// One victim's deque of lane l, retried on a lost race; null if empty.
  task_node* steal_from(worker& w, worker& victim, std::size_t l) {
    for (int attempt = 0; attempt < k_steal_attempts; ++attempt) {
      auto r = victim.deque(l).steal();
      if (r.status == steal_status::success) {
        w.counters.steals.add();
        return r.value;
      }
      if (r.status == steal_status::empty)
        break;
    }
    return nullptr;
  }

  /// steal() with placement: victims in the order of the topology, nearest first.
  [[gnu::noinline]] task_node* steal_nearest_first(worker& w, std::size_t l) {
    for (const unsigned v : w.steal_order) {
      if (task_node* node = steal_from(w, *m_workers[v], l))
        return node;
    }
    return nullptr;
  }
};

}  // namespace offload::detail
