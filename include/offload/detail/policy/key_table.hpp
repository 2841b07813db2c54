#pragma once

/// @file key_table.hpp
/// @brief key_table: the de-duplication keys pending now (task_options::key), each with the task
/// that holds it and the submissions that follow it.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string_view>
#include <typeinfo>
#include <unordered_map>
#include <utility>

#include "offload/detail/shared_state.hpp"
#include "offload/detail/shared_text.hpp"
#include "offload/detail/thread_annotations.hpp"
#include "offload/task_state.hpp"

namespace offload::detail {

/// A key's leader: the internal state every submission of the key follows. The table's entry
/// holds the key's record (its text is the table's key) until the task ends.
struct key_entry {
  text_ref key;
  std::uint64_t ticket = 0;             // distinguishes successive holders of one key
  shared_state_base* leader = nullptr;  // holds one reference (null: the holder is a post())
  const std::type_info* result_type = nullptr;
  std::function<void()> release_leader;
  std::size_t followers = 0;  // submitters' futures not cancelled; at 0 the task is cancelled
};

/// Thread-safe: lookup and insertion happen under mutex() (a submission decides and inserts in
/// one step); erase() and size() lock it themselves.
class key_table {
 public:
  key_table() = default;
  key_table(const key_table&) = delete;
  key_table& operator=(const key_table&) = delete;

  /// The table's mutex, for a submission's lookup-then-insert.
  annotated_mutex& mutex() noexcept OFFLOAD_RETURN_CAPABILITY(m_mutex) { return m_mutex; }

  /// The entry of `key`, or null.
  key_entry* find(std::string_view key) OFFLOAD_REQUIRES(m_mutex) {
    auto it = m_keys.find(key);
    return it == m_keys.end() ? nullptr : &it->second;
  }

  /// A ticket for a new holder.
  std::uint64_t next_ticket() noexcept OFFLOAD_REQUIRES(m_mutex) { return ++m_next_ticket; }

  /// Adds the entry of a key not in the table.
  void insert(key_entry entry) OFFLOAD_REQUIRES(m_mutex) {
    const std::string_view view(*entry.key.text());
    m_keys.emplace(view, std::move(entry));
  }

  /// Erases the key's holding `ticket` and drops the table's reference to its leader; with
  /// `last_follower`, only if this takes its follower count to 0. True if the key was erased.
  bool erase(const shared_text* key, std::uint64_t ticket, bool last_follower) noexcept
      OFFLOAD_EXCLUDES(m_mutex) {
    if (key == nullptr)
      return false;
    std::function<void()> release;
    text_ref held;  // the entry's reference to the key, dropped outside the lock
    {
      scoped_lock lock(m_mutex);
      auto it = m_keys.find(std::string_view(key->text));
      if (it == m_keys.end() || it->second.ticket != ticket)
        return false;  // released already, and perhaps held by a later submission now
      if (last_follower && --it->second.followers != 0)
        return false;  // another submitter still waits for the task
      release = std::move(it->second.release_leader);
      held = std::move(it->second.key);
      m_keys.erase(it);
    }
    if (release)
      release();
    return true;
  }

  /// Keys pending now.
  std::size_t size() {
    scoped_lock lock(m_mutex);
    return m_keys.size();
  }

 private:
  annotated_mutex m_mutex;
  // Views into the entries' key records.
  std::unordered_map<std::string_view, key_entry> m_keys OFFLOAD_GUARDED_BY(m_mutex);
  std::uint64_t m_next_ticket OFFLOAD_GUARDED_BY(m_mutex) = 0;
};

/// The state of a follower (a de-duplicated submission's future): a shared_state<T> that also
/// owns the link to the task it follows. On the heap (keyed submissions are a slower path), so
/// plain states stay within a pooled block.
template <class T>
class follower_state final : public shared_state<T> {
 public:
  static follower_state* create(scheduler* sched, std::unique_ptr<follow_link> link) {
    return new follower_state(sched, std::move(link));
  }

 private:
  follower_state(scheduler* sched, std::unique_ptr<follow_link> link) noexcept
      : shared_state<T>(sched, nullptr), m_link(std::move(link)) {}
  follow_link* link() const noexcept override { return m_link.get(); }
  void destroy() noexcept override { delete this; }

  std::unique_ptr<follow_link> m_link;
};

/// A keyed submission's future: reports the task's state, and cancels the task when the last
/// submitter still interested cancels.
struct key_follow_link final : follow_link {
  key_follow_link(key_table* t, shared_state_base* l, text_ref k, std::uint64_t tk) noexcept
      : table(t), leader(l), key(std::move(k)), ticket(tk) {
    leader->add_ref();
  }
  ~key_follow_link() override { leader->release(); }
  task_state leader_state() const noexcept override {
    // The leader's result is published before it is copied to the followers: until this
    // follower has its copy (or is cancelled), its state is not final.
    const task_state s = leader->state();
    return is_terminal(s) ? task_state::running : s;
  }
  void follower_cancelled() noexcept override {
    // The last submitter cancelled: the key is free, and the task is cancelled.
    if (table->erase(key.get(), ticket, true))
      leader->cancel("offload: task cancelled: every submitter of its key cancelled");
  }
  key_table* table;  // outlives the link while the follower can still be cancelled (not ready)
  shared_state_base* leader;  // holds one reference
  text_ref key;
  std::uint64_t ticket;
};

}  // namespace offload::detail
