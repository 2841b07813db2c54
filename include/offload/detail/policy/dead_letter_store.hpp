#pragma once

/// @file dead_letter_store.hpp
/// @brief dead_letter_store: the records of tasks that failed for good, bounded by count, bytes
/// and age, oldest first; where the pool and policy tasks send their dead letters.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "offload/clock.hpp"
#include "offload/dead_letter.hpp"
#include "offload/detail/policy/policy_task.hpp"
#include "offload/detail/pool/hooks.hpp"
#include "offload/detail/thread_annotations.hpp"

namespace offload::detail {

/// Thread-safe; every member but the settings is guarded by m_mutex (the failure path only).
class dead_letter_store final : public failure_sink {
 public:
  /// `clock`: the executor's manual clock, or null for clock::now().
  dead_letter_store(dead_letter_options limits,
                    std::function<void(const dead_letter&)> on_dead_letter,
                    std::shared_ptr<manual_clock> clock)
      : m_limits(limits), m_on_dead_letter(std::move(on_dead_letter)), m_clock(std::move(clock)) {}

  /// Gives the record its id, keeps it (unless max_count is 0) and calls on_dead_letter with it.
  /// Out of memory, the record is dropped: the failure still reaches its future and counters.
  void add_dead_letter(dead_letter d) noexcept override {
    try {
      std::optional<dead_letter> for_hook;
      {
        scoped_lock lock(m_mutex);
        d.id = ++m_next_id;
        if (m_on_dead_letter)
          for_hook = d;
        if (m_limits.max_count > 0) {
          m_bytes += footprint(d);
          m_records.push_back(std::move(d));
        }
        prune(now());
      }
      if (for_hook) {
        try {
          m_on_dead_letter(*for_hook);
        } catch (...) {  // the hook must not throw; the record is kept regardless
        }
      }
    } catch (...) {  // out of memory: the failure still reaches the future and the counters
    }
  }

  /// The records, oldest first (a snapshot).
  std::vector<dead_letter> snapshot() const {
    scoped_lock lock(m_mutex);
    prune(now());
    return {m_records.begin(), m_records.end()};
  }

  std::size_t size() const {
    scoped_lock lock(m_mutex);
    return m_records.size();
  }

  /// Takes the record with `id` out of the store if it is there and can be run again.
  std::optional<dead_letter> take_replayable(std::uint64_t id) {
    scoped_lock lock(m_mutex);
    auto it = std::find_if(m_records.begin(), m_records.end(), [&](const dead_letter& d) {
      return d.id == id;
    });
    if (it == m_records.end() || !it->replay)
      return std::nullopt;
    m_bytes -= footprint(*it);
    std::optional<dead_letter> taken(std::move(*it));
    m_records.erase(it);
    return taken;
  }

  /// Puts back a record take_replayable() took, in its place (the store is ordered by id).
  void put_back(dead_letter taken) {
    scoped_lock lock(m_mutex);
    auto at = std::find_if(m_records.begin(), m_records.end(), [&](const dead_letter& d) {
      return d.id > taken.id;
    });
    m_bytes += footprint(taken);
    m_records.insert(at, std::move(taken));
  }

 private:
  clock::time_point now() const noexcept { return m_clock ? m_clock->now() : clock::now(); }

  /// Evicts records past max_count, max_bytes or max_age, oldest first.
  void prune(clock::time_point now) const OFFLOAD_REQUIRES(m_mutex) {
    while (!m_records.empty() &&
           (m_records.size() > m_limits.max_count || m_bytes > m_limits.max_bytes ||
            now - m_records.front().last_failure > m_limits.max_age)) {
      m_bytes -= footprint(m_records.front());
      m_records.pop_front();
    }
  }

  /// What one record counts against dead_letter_options::max_bytes.
  static std::size_t footprint(const dead_letter& d) noexcept {
    auto text = [](const std::string& s) {
      return s.capacity() > 15 ? s.capacity() + 1 : 0;  // beyond the small-string buffer
    };
    return sizeof(dead_letter) + text(d.name) + text(d.key) + text(d.error) +
           text(d.exception_type) + (d.replay ? d.replay->footprint() : 0);
  }

  const dead_letter_options m_limits;
  const std::function<void(const dead_letter&)> m_on_dead_letter;
  const std::shared_ptr<manual_clock> m_clock;
  mutable annotated_mutex m_mutex;
  mutable std::deque<dead_letter> m_records
      OFFLOAD_GUARDED_BY(m_mutex);                              // by id; pruned by readers
  mutable std::size_t m_bytes OFFLOAD_GUARDED_BY(m_mutex) = 0;  // Σ footprint(m_records)
  std::uint64_t m_next_id OFFLOAD_GUARDED_BY(m_mutex) = 0;
};

}  // namespace offload::detail
