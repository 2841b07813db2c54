#pragma once

/// @file continuation.hpp
/// @brief continuation: a callback run once when a shared state becomes ready, and how a
/// thread fires them: one at a time (never nested), or handed to workers by a continuation sink.

#include <utility>

#include "offload/detail/scheduler.hpp"
#include "offload/detail/task_node.hpp"
#include "offload/lane.hpp"

namespace offload::detail {

/// A callback run once when a shared state becomes ready. Runs on the thread that completes the
/// state (or on the thread that attaches it, if the state is already ready); must not block.
struct continuation {
  virtual void fire() noexcept = 0;
  /// False if fire() runs no code of the user's (it wakes a fiber, forwards an exception, queues
  /// a task): such continuations run even on a thread that must not run user code (see
  /// continuation_sink). Asked once the state is ready, just before fire().
  virtual bool runs_user_code() const noexcept { return true; }
  virtual ~continuation() = default;
  continuation* next = nullptr;
  /// False for a continuation owned by its creator (a fiber waiting with it on its stack):
  /// fire() is then the state's last access to it.
  bool heap_owned = true;
  /// Fires `c` and frees it if the state owned it.
  static void fire_and_delete(continuation* c) noexcept {
    const bool owned = c->heap_owned;  // read first: fire() may end a stack-owned one's life
    c->fire();
    if (owned)
      delete c;
  }
};

/// Where continuations published on the calling thread go instead of running there: set on the
/// executor's timer thread (while it runs a deadline's expiry), which must only hand work to
/// workers. Null scheduler: they run on the publishing thread.
struct continuation_sink {
  scheduler* to = nullptr;
  offload::lane lane = offload::lane::normal;
};
inline thread_local continuation_sink tl_continuation_sink{};

/// Continuations fire one after another, never nested: a continuation whose effects publish
/// another state (a chain of then() on promises, say) queues that state's continuations here,
/// and the outermost fire loop on the thread runs them once the current one returns. So a chain
/// of any length is resolved with constant stack depth. Per thread; a fiber that suspends saves
/// and resets it (pool_waits::suspend()), so that another fiber's continuations do not queue
/// behind a suspended one.
struct continuation_queue {
  bool firing = false;
  continuation* head = nullptr;  // FIFO of lists not fired yet, linked through `next`
  continuation* tail = nullptr;
};
inline thread_local continuation_queue tl_continuations{};

void fire_continuations(continuation* list) noexcept;

/// A task that fires continuations a continuation sink took: on a worker, or where it is dropped
/// (a worker cancelling, or shutdown), since continuations resolve accepted work either way.
struct continuation_batch {
  continuation* list;
  void operator()() const noexcept { fire_continuations(list); }
  void discard(discard_reason) const noexcept {
    if (list != nullptr)
      fire_continuations(list);
  }
};

/// Hands `list` to the calling thread's continuation sink as one task. False (nothing taken) if
/// no task could be made or the sink's scheduler stopped.
inline bool hand_to_sink(continuation* list) noexcept {
  const continuation_sink sink = tl_continuation_sink;
  task_node* node = nullptr;
  try {
    node = make_task(continuation_batch{list});
  } catch (...) {
    return false;
  }
  node->lane = sink.lane;
  try {
    sink.to->schedule_in_lane(node);
  } catch (...) {
    task_model<continuation_batch>::get(node)->list = nullptr;  // the caller fires them
    discard_task(node, discard_reason::rejected);
    return false;
  }
  return true;
}

/// Runs the continuations of `list` (linked through `next`), and every list queued meanwhile on
/// this thread, one at a time (see continuation_queue). On a thread with a continuation sink, the
/// ones that run user code go to the sink instead, as one task.
inline void fire_continuations(continuation* list) noexcept {
  continuation_queue& q = tl_continuations;
  if (q.firing) {  // inside a continuation: run once it returns, not nested in it
    continuation* last = list;
    while (last->next != nullptr) last = last->next;
    (q.tail != nullptr ? q.tail->next : q.head) = list;
    q.tail = last;
    return;
  }
  q.firing = true;
  for (;;) {
    continuation* for_sink = nullptr;
    while (list != nullptr) {
      continuation* next = list->next;
      if (tl_continuation_sink.to != nullptr && list->runs_user_code()) {
        list->next = for_sink;
        for_sink = list;
      } else {
        continuation::fire_and_delete(list);
      }
      list = next;
    }
    if (for_sink != nullptr && !hand_to_sink(for_sink)) {
      // No worker can take them (no memory, or stopped): they run here after all.
      const continuation_sink sink = std::exchange(tl_continuation_sink, {});
      while (for_sink != nullptr) {
        continuation* next = for_sink->next;
        continuation::fire_and_delete(for_sink);
        for_sink = next;
      }
      tl_continuation_sink = sink;
    }
    list = std::exchange(q.head, nullptr);
    q.tail = nullptr;
    if (list == nullptr)
      break;
  }
  q.firing = false;
}

}  // namespace offload::detail
