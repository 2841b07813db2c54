#pragma once

/// @file waiter.hpp
/// @brief A waiter of task_mutex or manual_reset_event: a suspended fiber, or a blocked thread,
/// queued in the primitive's list under its guard and woken once.

#include <atomic>
#include <cstdint>
#include <mutex>

#include "offload/detail/event_count.hpp"
#include "offload/detail/fiber_wake.hpp"
#include "offload/detail/scheduler.hpp"

namespace offload::detail {

/// Lives on the waiting task's (or thread's) stack until it is woken.
struct waiter {
  fiber_handle* suspended = nullptr;    // set: a fiber to resume; null: a thread to wake
  std::atomic<std::uint32_t> woken{0};  // the blocked thread's futex word
  waiter* next = nullptr;

  /// Wakes it. The last access to *this (the owner may return at once): the fiber pointer is
  /// read before, and a thread's futex is woken by address only.
  void wake() noexcept {
    if (fiber_handle* f = suspended) {
      fiber_wake_list::make_ready(f);
      return;
    }
    // [WT1] release; pairs with the acquire in block() [WT2]: what the waker did is visible.
    woken.store(1, std::memory_order_release);
    futex_wake(woken, 1);
  }

  /// A thread waits here until wake().
  void block() noexcept {
    while (woken.load(std::memory_order_acquire) == 0)  // [WT2]
      futex_wait(woken, 0);
  }
};

/// A FIFO of waiters; the owner's guard protects it.
struct waiter_list {
  waiter* head = nullptr;
  waiter* tail = nullptr;
  void push(waiter* w) noexcept {
    w->next = nullptr;
    (tail != nullptr ? tail->next : head) = w;
    tail = w;
  }
  waiter* pop() noexcept {
    waiter* w = head;
    if (w != nullptr) {
      head = w->next;
      if (head == nullptr)
        tail = nullptr;
    }
    return w;
  }
  /// Takes every waiter (to wake them after the guard is released).
  waiter* take_all() noexcept {
    waiter* w = head;
    head = tail = nullptr;
    return w;
  }
};

/// Waits until `ready_or_enqueue(w)` (called under the caller's guard inside it) reports the
/// condition met, or until the waiter it queued is woken. In a task on a worker the fiber is
/// suspended; elsewhere the thread blocks. `try_now(w)` returns true when the condition holds
/// (nothing queued) and false after queueing `w`.
template <class TryNow>
void wait_as_task_or_thread(TryNow try_now) {
  waiter self;
  if (scheduler* s = tl_current_scheduler) {
    struct arm_waiter final : suspend_arm {
      TryNow* try_now;
      waiter* self;
      arm_waiter(TryNow* t, waiter* w) noexcept : try_now(t), self(w) {}
      void arm(fiber_handle* f) noexcept override {
        self->suspended = f;
        if ((*try_now)(self))
          fiber_wake_list::make_ready(f);  // met meanwhile: nothing queued
      }
    } arm{&try_now, &self};
    if (s->suspend(arm))
      return;
    // A worker that cannot suspend (fibers off) helps run queued work meanwhile: the task that
    // would wake it may be queued behind it.
    if (try_now(&self))
      return;
    // `self` is queued: the wait cannot be refused, so without stack room to help the thread
    // blocks until woken.
    if (!s->help_until([&self] {
          return self.woken.load(std::memory_order_acquire) != 0;  // [WT2]
        })) {
      self.block();
    }
    return;
  }
  if (try_now(&self))
    return;
  self.block();
}

}  // namespace offload::detail
