#pragma once

/// @file chase_lev_deque.hpp
/// @brief Chase–Lev work-stealing deque with the C11 orderings of Lê, Pop, Cohen and Zappa
/// Nardelli, "Correct and Efficient Work-Stealing for Weak Memory Models" (PPoPP'13, Fig. 1).

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <type_traits>
#include <vector>

#include "offload/config.hpp"
#include "offload/detail/atomic.hpp"

namespace offload::detail {

/// Why steal() returned nothing. A thief backs off differently in the two cases.
enum class steal_status { success, empty, lost_race };

template <class T>
struct steal_result {
  steal_status status;
  T value;  ///< meaningful only when status == success
};

/// Work-stealing deque of trivially copyable values (offload stores task pointers).
///
/// Roles: one **owner** thread calls push() and pop(); any thread may call steal().
/// Order: the owner pops LIFO (newest first); thieves steal FIFO (oldest first).
/// Guarantee: everything the owner did before push(x) happens-before the use of x by the thread
/// that pop() or steal() returned it to. Each pushed value is returned exactly once.
/// Progress: push/pop are wait-free except when the buffer grows; steal is lock-free.
/// size_hint() is a racy estimate, not linearizable.
///
/// Deviation from the paper, on purpose: the paper's two seq_cst fences (in pop and steal) are
/// expressed as seq_cst operations on m_bottom and m_top. On x86-64 that compiles to the same
/// instructions as the fence version for pop (XCHG instead of MOV+MFENCE) and to cheaper ones for
/// steal (no MFENCE), and ThreadSanitizer, which does not model fences, checks the real protocol.
/// The single total order over those seq_cst operations gives the property the fences provide: an
/// owner taking the last element and a thief stealing it cannot both miss each other's update.
///
/// Retired buffers are kept until destruction, because a thief may still read an old buffer after
/// the owner grew it (the paper's choice too); growth doubles, so they sum to less than the live
/// one.
///
/// @tparam Atomic the atomic template; std::atomic in production, a Relacy adapter in model checks.
template <class T, template <class> class Atomic = std::atomic>
class chase_lev_deque {
  static_assert(std::is_trivially_copyable_v<T>, "elements are copied through atomics");

  struct buffer {
    explicit buffer(std::int64_t capacity)
        : m_mask(capacity - 1), m_slots(static_cast<std::size_t>(capacity)) {}
    std::int64_t capacity() const noexcept { return m_mask + 1; }
    // Slots are accessed relaxed: ordering comes from m_bottom [D1] and m_top [D2].
    void put(std::int64_t i, T value) noexcept {
      m_slots[static_cast<std::size_t>(i & m_mask)].store(value, std::memory_order_relaxed);
    }
    T get(std::int64_t i) const noexcept {
      return m_slots[static_cast<std::size_t>(i & m_mask)].load(std::memory_order_relaxed);
    }
    std::int64_t m_mask;
    std::vector<Atomic<T>> m_slots;
  };

 public:
  /// @param capacity initial capacity, rounded up to a power of two (at least 2); grows as needed.
  explicit chase_lev_deque(std::int64_t capacity = 256) {
    std::int64_t c = 2;
    while (c < capacity) c *= 2;
    m_buffers.push_back(std::make_unique<buffer>(c));
    m_buffer.store(m_buffers.back().get(), std::memory_order_relaxed);
    m_top.store(0, std::memory_order_relaxed);
    m_bottom.store(0, std::memory_order_relaxed);
  }

  chase_lev_deque(const chase_lev_deque&) = delete;
  chase_lev_deque& operator=(const chase_lev_deque&) = delete;

  /// Adds a value at the bottom. Owner thread only.
  void push(T value) {
    const std::int64_t bottom = m_bottom.load(std::memory_order_relaxed);
    // [D0] acquire; pairs with the seq_cst (release) CAS on m_top in steal() [D3]: the slot a thief
    // took is free to overwrite only after its read of the slot.
    const std::int64_t top = m_top.load(std::memory_order_acquire);
    buffer* buf = m_buffer.load(std::memory_order_relaxed);
    if (bottom - top > buf->capacity() - 1)
      buf = grow(buf, top, bottom);
    buf->put(bottom, value);
    // [D1] release; pairs with the seq_cst (acquire) load of m_bottom in steal() [D2]: the slot
    // write and everything before push() are visible to the thief that sees the new bottom.
    m_bottom.store(bottom + 1, std::memory_order_release);
  }

  /// Removes the newest value, or returns nullopt if empty. Owner thread only.
  std::optional<T> pop() {
    const std::int64_t bottom = m_bottom.load(std::memory_order_relaxed) - 1;
    buffer* buf = m_buffer.load(std::memory_order_relaxed);
    // [D4] seq_cst store then seq_cst load: orders the reservation of the bottom slot before the
    // read of m_top; pairs with [D5] in steal() (the paper's fence in take()).
    m_bottom.store(bottom, std::memory_order_seq_cst);
    std::int64_t top = m_top.load(std::memory_order_seq_cst);
    if (top > bottom) {  // was empty
      m_bottom.store(bottom + 1, std::memory_order_relaxed);
      return std::nullopt;
    }
    T value = buf->get(bottom);
    if (top == bottom) {
      // Last element: race thieves for it. [D3'] seq_cst CAS in the same total order as [D3].
      const bool won = m_top.compare_exchange_strong(
          top, top + 1, std::memory_order_seq_cst, std::memory_order_relaxed);
      m_bottom.store(bottom + 1, std::memory_order_relaxed);
      if (!won)
        return std::nullopt;
    }
    return value;
  }

  /// Takes the oldest value. Any thread. Thread-safe.
  steal_result<T> steal() {
    // [D5] seq_cst loads of m_top then m_bottom; pair with [D4] in pop() (the paper's fence in
    // steal()). [D2] the m_bottom load is also the acquire that pairs with [D1] in push().
    std::int64_t top = m_top.load(std::memory_order_seq_cst);
    const std::int64_t bottom = m_bottom.load(std::memory_order_seq_cst);
    if (top >= bottom)
      return {steal_status::empty, T{}};
    // [B1] acquire; pairs with the release store of m_buffer in grow() [B0].
    buffer* buf = m_buffer.load(std::memory_order_acquire);
    T value = buf->get(top);
    // [D3] seq_cst CAS: claims slot `top`; its release half pairs with [D0] in push().
    if (!m_top.compare_exchange_strong(
            top, top + 1, std::memory_order_seq_cst, std::memory_order_relaxed)) {
      return {steal_status::lost_race, T{}};
    }
    return {steal_status::success, value};
  }

  /// Racy estimate of the number of values; exact only when no other thread touches the deque.
  std::int64_t size_hint() const noexcept {
    const std::int64_t bottom = m_bottom.load(std::memory_order_relaxed);
    const std::int64_t top = m_top.load(std::memory_order_relaxed);
    return bottom > top ? bottom - top : 0;
  }

  bool empty_hint() const noexcept { return size_hint() == 0; }

 private:
  buffer* grow(buffer* old, std::int64_t top, std::int64_t bottom) {
    auto bigger = std::make_unique<buffer>(old->capacity() * 2);
    for (std::int64_t i = top; i < bottom; ++i) bigger->put(i, old->get(i));
    buffer* raw = bigger.get();
    m_buffers.push_back(std::move(bigger));  // owner-only; old buffers stay alive for thieves
    // [B0] release; pairs with [B1] in steal(): the copied slots are visible through the new
    // buffer.
    m_buffer.store(raw, std::memory_order_release);
    return raw;
  }

  // m_top: CAS'd by thieves and by the owner for the last element; read by all.
  alignas(k_cache_line) Atomic<std::int64_t> m_top;
  // m_bottom: written by the owner only; read by thieves.
  alignas(k_cache_line) Atomic<std::int64_t> m_bottom;
  // m_buffer: written by the owner when it grows the deque; read by thieves.
  alignas(k_cache_line) Atomic<buffer*> m_buffer;
  std::vector<std::unique_ptr<buffer>> m_buffers;  // owner-only: the live buffer and retired ones
};

}  // namespace offload::detail
