#pragma once

/// @file fiber_wake.hpp
/// @brief What waking a suspended fiber needs, without Boost.Context: fiber_handle (a fiber as
/// the things it waits on see it), suspend_arm, and fiber_wake_list (a worker's stack of woken
/// fibers, which any thread may push to). Futures and task groups include this, not fiber.hpp.

#include <atomic>
#include <cstdint>

#include "offload/detail/event_count.hpp"

namespace offload::detail {

class fiber_wake_list;

/// A fiber's links: the worker it belongs to (it only ever runs there) and its place in one of
/// that worker's lists (idle, ready, yielded). The rest of a fiber is in fiber.hpp (fiber).
struct fiber_handle {
  fiber_wake_list* home = nullptr;
  fiber_handle* next = nullptr;
};

/// What a fiber does right after it suspended, on the fiber that took over. `arm` registers
/// the suspended fiber with what it waits for (or makes it ready at once); it must not throw
/// and must not wait.
struct suspend_arm {
  virtual void arm(fiber_handle* suspended) noexcept = 0;

 protected:
  ~suspend_arm() = default;
};

/// The part of a worker's fiber runtime that other threads touch: woken fibers are pushed here
/// (make_ready()) and the worker takes them all at once (fiber_runtime::take_ready()).
class fiber_wake_list {
 public:
  explicit fiber_wake_list(event_count& wake) noexcept : m_wake(&wake) {}
  fiber_wake_list(const fiber_wake_list&) = delete;
  fiber_wake_list& operator=(const fiber_wake_list&) = delete;

  /// Any thread: `f` (suspended in fiber_runtime::suspend() and armed) may run again. Exactly
  /// once per suspension. Wakes the worker if it sleeps.
  static void make_ready(fiber_handle* f) noexcept {
    fiber_wake_list& rt = *f->home;
    // Counted while it still touches rt after publishing f: the worker (and so the executor)
    // does not end before the count is back to 0 (wakers_done()). Relaxed: the release CAS
    // [F1] publishes it, and the worker reads it only after taking f ([F2]).
    rt.m_wakers.fetch_add(1, std::memory_order_relaxed);
    fiber_handle* head = rt.m_ready.load(std::memory_order_relaxed);
    do {
      f->next = head;
      // [F1] release; pairs with the acquire exchange in take_ready() [F2]: the link is seen.
    } while (!rt.m_ready.compare_exchange_weak(
        head, f, std::memory_order_release, std::memory_order_relaxed));
    rt.m_wake->notify_all();
    // [F3] release; pairs with the acquire in wakers_done() [F4]: the notify is over.
    rt.m_wakers.fetch_sub(1, std::memory_order_release);
  }

  /// True when no make_ready() call is still touching this runtime (checked before the worker
  /// ends).
  bool wakers_done() const noexcept {
    return m_wakers.load(std::memory_order_acquire) == 0;  // [F4]
  }

 protected:
  ~fiber_wake_list() = default;

  event_count* m_wake;
  std::atomic<fiber_handle*> m_ready{nullptr};  // woken fibers pushed by any thread (LIFO)
  std::atomic<std::uint32_t> m_wakers{0};       // make_ready() calls in progress
};

}  // namespace offload::detail
