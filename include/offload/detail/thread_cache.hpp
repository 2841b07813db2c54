#pragma once

/// @file thread_cache.hpp
/// @brief thread_cache: what a thread remembers of the objects it used last (its producer record,
/// its last interned plan, its last task name), so that a loop of submissions takes no lock.

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <utility>

namespace offload::detail {

/// A process-unique id for an object that threads cache things about: unlike its address, it is
/// never reused, so an entry left by a destroyed object never matches its successor.
inline std::uint64_t next_cache_uid() noexcept {
  static std::atomic<std::uint64_t> uid{1};
  return uid.fetch_add(1, std::memory_order_relaxed);  // only uniqueness matters
}

/// Per thread, up to `N` entries of `Value`, each for one owner uid, replaced round-robin.
/// `Tag` tells caches of different uses apart (each Tag has its own thread-local storage).
/// Calling thread only; a value must stay valid as long as its owner lives (or hold what it needs).
template <class Tag, class Value, std::size_t N = 1>
class thread_cache {
 public:
  /// The calling thread's entry for `uid`, or null.
  static Value* find(std::uint64_t uid) noexcept {
    for (auto& e : slots().entries) {
      if (e.uid == uid)
        return &e.value;
    }
    return nullptr;
  }

  /// Sets the calling thread's entry for `uid` (replacing the oldest if none is for it).
  static void put(std::uint64_t uid, Value value) {
    if (Value* held = find(uid)) {
      *held = std::move(value);
      return;
    }
    state& s = slots();
    s.entries[s.next] = entry{uid, std::move(value)};
    s.next = (s.next + 1) % N;
  }

 private:
  struct entry {
    std::uint64_t uid = 0;  // 0: empty (uids start at 1)
    Value value{};
  };
  struct state {
    std::array<entry, N> entries{};
    std::size_t next = 0;
  };
  static state& slots() noexcept {
    thread_local state s;
    return s;
  }
};

}  // namespace offload::detail
