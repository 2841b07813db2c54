#pragma once

// Adapters that let offload's lock-free templates run under the Relacy model checker.
// Include the offload headers BEFORE this file: relacy.hpp #defines memory_order_* macros, so
// only scoped enumerators (std::memory_order::relaxed) are used below.

#include <atomic>
#include <chrono>
#include <cstdint>

#include <relacy/relacy.hpp>

namespace offload_model {

inline rl::memory_order to_rl(std::memory_order mo) {
  switch (mo) {
    case std::memory_order::relaxed:
      return rl::mo_relaxed;
    case std::memory_order::consume:
      return rl::mo_acquire;  // never used by offload
    case std::memory_order::acquire:
      return rl::mo_acquire;
    case std::memory_order::release:
      return rl::mo_release;
    case std::memory_order::acq_rel:
      return rl::mo_acq_rel;
    case std::memory_order::seq_cst:
      return rl::mo_seq_cst;
  }
  return rl::mo_seq_cst;
}

/// std::atomic-shaped wrapper over rl::atomic: the subset offload's templates use.
template <class T>
class atomic {
 public:
  atomic() = default;
  atomic(T v) { m($).store(v, rl::mo_relaxed); }  // NOLINT: mirrors std::atomic
  T load(std::memory_order mo = std::memory_order::seq_cst) const { return m($).load(to_rl(mo)); }
  void store(T v, std::memory_order mo = std::memory_order::seq_cst) { m($).store(v, to_rl(mo)); }
  T exchange(T v, std::memory_order mo = std::memory_order::seq_cst) {
    return m($).exchange(v, to_rl(mo));
  }
  T fetch_add(T v, std::memory_order mo = std::memory_order::seq_cst) {
    return m($).fetch_add(v, to_rl(mo));
  }
  T fetch_sub(T v, std::memory_order mo = std::memory_order::seq_cst) {
    return m($).fetch_sub(v, to_rl(mo));
  }
  T fetch_or(T v, std::memory_order mo = std::memory_order::seq_cst) {
    return m($).fetch_or(v, to_rl(mo));
  }
  T fetch_and(T v, std::memory_order mo = std::memory_order::seq_cst) {
    return m($).fetch_and(v, to_rl(mo));
  }
  bool compare_exchange_strong(T& expected,
                               T desired,
                               std::memory_order ok,
                               std::memory_order fail) {
    return m($).compare_exchange_strong(expected, desired, to_rl(ok), to_rl(fail));
  }
  bool compare_exchange_weak(T& expected, T desired, std::memory_order ok, std::memory_order fail) {
    return m($).compare_exchange_weak(expected, desired, to_rl(ok), to_rl(fail));
  }

 private:
  mutable rl::atomic<T> m;
};

/// Futex semantics for the model: the value check and the sleep are atomic with respect to wake,
/// as in the kernel. A lost wake-up shows as Relacy's deadlock report.
struct model_platform {
  static constexpr bool k_fences_checked = true;  // Relacy models fences
  static inline rl::mutex* mutex = nullptr;
  static inline rl::condition_variable* cv = nullptr;

  static void wait(atomic<std::uint32_t>& word, std::uint32_t expected, std::chrono::nanoseconds) {
    mutex->lock($);
    while (word.load(std::memory_order::relaxed) == expected) cv->wait(*mutex, $);
    mutex->unlock($);
  }
  static void wake(atomic<std::uint32_t>&, int) {
    mutex->lock($);
    cv->notify_all($);
    mutex->unlock($);
  }
  // Both halves of the store-load barrier are seq_cst fences here: the model checks the
  // symmetric protocol; production's asymmetric version (a compiler barrier against membarrier)
  // relies on membarrier(2)'s guarantee, which Relacy cannot model.
  static void notifier_barrier() { rl::atomic_thread_fence(rl::mo_seq_cst, $); }
  static void waiter_barrier() { rl::atomic_thread_fence(rl::mo_seq_cst, $); }
};

}  // namespace offload_model
