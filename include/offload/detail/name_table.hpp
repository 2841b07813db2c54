#pragma once

/// @file name_table.hpp
/// @brief name_table: an executor's task names, one shared_text per distinct name in use, so
/// that a name is stored once however many tasks carry it, and freed once none does.

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "offload/detail/shared_text.hpp"
#include "offload/detail/thread_cache.hpp"

namespace offload::detail {

/// Thread-safe. The table holds one reference to each record; a record that only the table holds
/// is unused and is swept when the table has grown by half since the last sweep (at least 1024
/// entries), so the table stays within twice the names in use (plus one per thread, whose last
/// name is cached) whatever the number of distinct names ever seen.
class name_table {
 public:
  name_table() = default;
  name_table(const name_table&) = delete;
  name_table& operator=(const name_table&) = delete;
  ~name_table() {
    for (auto& [text, record] : m_records) record->release();
  }

  /// A reference to the record of `name` (none for ""). The calling thread's last name is
  /// cached, so a loop submitting one name takes the lock once.
  text_ref intern(const std::string& name) {
    if (name.empty())
      return {};
    if (const text_ref* last = cache::find(m_uid); last != nullptr && *last->text() == name)
      return *last;
    std::lock_guard lock(m_mutex);
    auto it = m_records.find(std::string_view(name));
    if (it == m_records.end()) {
      if (m_records.size() >= m_sweep_at)
        sweep();
      auto* record = new shared_text(name);  // its reference is the table's
      try {
        it = m_records.emplace(std::string_view(record->text), record).first;
      } catch (...) {
        record->release();
        throw;
      }
    }
    text_ref found = text_ref::share(it->second);
    cache::put(m_uid, found);
    return found;
  }

  /// Distinct names held now (in use, or not swept yet).
  std::size_t size() const {
    std::lock_guard lock(m_mutex);
    return m_records.size();
  }

 private:
  /// Drops the records only the table holds. Caller holds m_mutex.
  void sweep() noexcept {
    for (auto it = m_records.begin(); it != m_records.end();) {
      // acquire; pairs with the release half of the last holder's decrement: it is done with
      // the text. A count of 1 is the table's own: no holder is left to add one.
      if (it->second->refs.load(std::memory_order_acquire) == 1) {
        shared_text* record = it->second;
        it = m_records.erase(it);
        record->release();
      } else {
        ++it;
      }
    }
    m_sweep_at = std::max<std::size_t>(1024, m_records.size() + m_records.size() / 2);
  }

  mutable std::mutex m_mutex;
  std::unordered_map<std::string_view, shared_text*> m_records;  // views into the records' text
  std::size_t m_sweep_at = 1024;
  const std::uint64_t m_uid = next_cache_uid();  // this table in the threads' caches
  struct cache_tag;
  using cache = thread_cache<cache_tag, text_ref>;  // a thread's last name
};

}  // namespace offload::detail
