#pragma once

/// @file fiber.hpp
/// @brief Fibers for waiting tasks: each worker runs its loop on a pooled Boost.Context fiber, so
/// a task that must wait suspends the fiber it runs on while the worker goes on with a fresh one.
///
/// A task that never waits costs nothing here: it runs on whichever fiber is running the worker
/// loop, with no switch. The first wait of a task switches the worker to an idle fiber (from the
/// worker's idle list, or a new stack) that carries on with the loop; the waiting fiber is armed
/// (registered with what it waits for) only once it is fully suspended, so a wake-up can never
/// race with the suspension. Fibers never migrate: a woken fiber is resumed by the worker it
/// belongs to, so thread-local storage seen by a task never changes under it.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <utility>

#include <boost/context/fiber.hpp>
#include <boost/context/protected_fixedsize_stack.hpp>

#include "offload/detail/event_count.hpp"
#include "offload/lane.hpp"

#if defined(__GLIBCXX__) && !defined(__ARM_EABI_UNWINDER__)
#include <cxxabi.h>
// The C++ runtime keeps "exceptions being handled" per thread (the Itanium ABI's
// __cxa_eh_globals); each fiber gets its own copy, swapped on every switch, so a task may wait
// inside a catch block or while unwinding.
#define OFFLOAD_FIBER_EH_SWAP 1
#endif

#if defined(__SANITIZE_THREAD__)
#define OFFLOAD_TSAN_FIBERS 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define OFFLOAD_TSAN_FIBERS 1
#endif
#endif

#if defined(OFFLOAD_TSAN_FIBERS)
extern "C" {
void* __tsan_get_current_fiber(void);
void* __tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void* fiber);
void __tsan_switch_to_fiber(void* fiber, unsigned flags);
}
#endif

namespace offload::detail {

class fiber_runtime;

/// A fiber's share of the C++ runtime's per-thread exception state (Itanium C++ ABI 2.2.2:
/// caughtExceptions, uncaughtExceptions).
struct exception_state {
  void* caught = nullptr;
  unsigned int uncaught = 0;
};

#if defined(OFFLOAD_FIBER_EH_SWAP)
inline exception_state* thread_exception_state() noexcept {
  return reinterpret_cast<exception_state*>(abi::__cxa_get_globals());
}
#endif

/// One execution context with its own stack (or, for `fiber_runtime::m_main`, the worker
/// thread's own stack). Owned by one worker's fiber_runtime.
struct fiber {
  boost::context::fiber context;  ///< the saved context while not running (empty while running)
  fiber_runtime* home = nullptr;  ///< the worker it belongs to; it only ever runs there
  fiber* next = nullptr;          ///< link in the idle list or the ready stack
  exception_state exceptions;     ///< its exception state while it is not running
  std::uint64_t yield_mark = 0;   ///< tasks started on the worker when it yielded
  char* stack_low = nullptr;      ///< lowest usable stack address (null: the thread's stack)
#if defined(OFFLOAD_TSAN_FIBERS)
  void* tsan = nullptr;
#endif
};

/// What a fiber does right after it suspended, on the fiber that took over. `arm` registers
/// the suspended fiber with what it waits for (or makes it ready at once); it must not throw
/// and must not wait.
struct suspend_arm {
  virtual void arm(fiber* suspended) noexcept = 0;

 protected:
  ~suspend_arm() = default;
};

/// One worker's fibers. Every member is for the owning worker thread only, except
/// make_ready(), which any thread may call.
class fiber_runtime {
 public:
  /// Runs the worker loop on a fresh fiber; the loop runs on the same fiber until that fiber
  /// waits. `loop(ctx)` returns when the worker should stop (and at idle fibers' exit).
  using loop_fn = void (*)(void* ctx);

  fiber_runtime(std::size_t stack_size, event_count& wake) noexcept
      : m_stack_size(stack_size), m_wake(&wake) {}
  fiber_runtime(const fiber_runtime&) = delete;
  fiber_runtime& operator=(const fiber_runtime&) = delete;
  ~fiber_runtime() = default;  // run() ends every fiber it made

  /// On the worker thread's own stack: runs `loop` on fibers until it returns; then ends every
  /// idle fiber. Precondition: no fiber of this worker is suspended in a wait (suspended() == 0).
  void run(loop_fn loop, void* ctx) {
    m_loop = loop;
    m_loop_ctx = ctx;
    m_main.home = this;
#if defined(OFFLOAD_TSAN_FIBERS)
    m_main.tsan = __tsan_get_current_fiber();
#endif
    m_current = &m_main;
    fiber* first = new_fiber();
    switch_to(first, after::nothing);  // returns when the loop fiber that saw the stop ends
    m_current = &m_main;
    release_idle();
  }

  /// The fiber running now; null outside run().
  fiber* current() const noexcept {
    return m_current;
  }

  /// True if the calling task may suspend: it runs on a pooled fiber (and, on a C++ runtime
  /// whose exception state cannot be swapped per fiber, is not inside a catch block or stack
  /// unwinding).
  bool can_suspend() const noexcept {
#if defined(OFFLOAD_FIBER_EH_SWAP)
    return m_current != nullptr && m_current != &m_main;
#else
    return m_current != nullptr && m_current != &m_main && std::uncaught_exceptions() == 0 &&
           !std::current_exception();
#endif
  }

  /// Bytes of stack left below the caller (a large value on the thread's own stack).
  std::size_t stack_room() const noexcept {
    char here = 0;
    char* low = m_current != nullptr ? m_current->stack_low : nullptr;
    if (low == nullptr)
      return SIZE_MAX;
    return static_cast<std::size_t>(&here - low);
  }

  /// Suspends the calling task's fiber: the worker goes on with an idle (or new) fiber, on which
  /// `a.arm(suspended)` runs first. Returns once make_ready(suspended) was called and this
  /// worker resumed it. Thread-locals that other tasks change meanwhile (the task context) are
  /// the caller's to save and restore. Precondition: can_suspend().
  void suspend(suspend_arm& a) {
    fiber* next = take_idle();
    if (next == nullptr)
      next = new_fiber();  // may throw std::bad_alloc / std::system_error: nothing changed
    m_arm = &a;
    m_suspended.store(m_suspended.load(std::memory_order_relaxed) + 1,
                      std::memory_order_relaxed);  // owner-written gauge, read by health()
    switch_to(next, after::arm);
    // Resumed by the worker loop (resume_ready) on this same worker.
  }

  /// Any thread: `f` (suspended in suspend() and armed) may run again. Exactly once per
  /// suspension. Wakes the worker if it sleeps.
  static void make_ready(fiber* f) noexcept {
    fiber_runtime& rt = *f->home;
    // Counted while it still touches rt after publishing f: the worker (and so the executor)
    // does not end before the count is back to 0 (wakers_done()).
    rt.m_wakers.fetch_add(1, std::memory_order_relaxed);
    fiber* head = rt.m_ready.load(std::memory_order_relaxed);
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

  /// True if a woken fiber waits to be resumed. The relaxed load is enough for parking: the
  /// worker checks it between event_count::prepare_wait() and commit_wait(), whose barriers order
  /// it against make_ready()'s push and notify (see event_count.hpp).
  bool has_ready() const noexcept {
    return m_ready_local != nullptr || m_ready.load(std::memory_order_relaxed) != nullptr;
  }

  /// From the worker loop, between tasks: if a woken fiber waits, switches to it (the calling
  /// loop fiber goes to the idle list) and returns true once the caller runs again (it was taken
  /// from the idle list because another task waited), else returns false at once.
  bool resume_ready() {
    return resume(take_ready());
  }

  /// Owner: `f` suspended in this_task::yield(); resume_yielded() takes it back later.
  void push_yielded(fiber* f) noexcept {
    f->next = nullptr;
    f->yield_mark = m_starts;
    (m_yielded_tail != nullptr ? m_yielded_tail->next : m_yielded) = f;
    m_yielded_tail = f;
  }
  bool has_yielded() const noexcept {
    return m_yielded != nullptr;
  }

  /// Owner: whether the loop may resume a woken fiber now. After k_ready_streak resumptions in a
  /// row it says no once, so that fibers waking each other cannot starve queued tasks.
  bool ready_turn() noexcept {
    if (++m_ready_streak <= k_ready_streak)
      return true;
    m_ready_streak = 0;
    return false;
  }

  /// Owner: the worker loop is about to start a task.
  void count_start() noexcept {
    ++m_starts;
  }

  /// True if the first yielded fiber has let another task start since it yielded.
  bool yielded_due() const noexcept {
    return m_yielded != nullptr && m_yielded->yield_mark != m_starts;
  }

  /// As resume_ready(), for the fiber that yielded first.
  bool resume_yielded() {
    fiber* f = m_yielded;
    if (f != nullptr) {
      m_yielded = f->next;
      if (m_yielded == nullptr)
        m_yielded_tail = nullptr;
    }
    return resume(f);
  }

  /// Tasks suspended in a wait on this worker (owner-written; any thread may read).
  std::uint32_t suspended() const noexcept {
    return m_suspended.load(std::memory_order_relaxed);
  }

  /// True once run() is ending: an idle fiber resumed with it set returns from the loop.
  bool exiting() const noexcept {
    return m_exiting;
  }

  std::size_t stack_size() const noexcept {
    return m_stack_size;
  }

  /// Fibers alive (idle, running or suspended; owner-written, any thread may read).
  std::size_t fiber_count() const noexcept {
    return m_fibers.load(std::memory_order_relaxed);
  }

 private:
  enum class after : std::uint8_t { nothing, arm, idle };

  bool resume(fiber* f) {
    if (f == nullptr)
      return false;
    m_suspended.store(m_suspended.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
    switch_to(f, after::idle);
    return true;
  }

  /// A stack allocator that records the stack's bounds in the fiber.
  struct recording_stack {
    boost::context::protected_fixedsize_stack inner;
    fiber* record;
    boost::context::stack_context allocate() {
      boost::context::stack_context s = inner.allocate();
      // The lowest page of the mapping is the guard page.
      record->stack_low =
          static_cast<char*>(s.sp) - s.size + boost::context::stack_traits::page_size();
      return s;
    }
    void deallocate(boost::context::stack_context& s) noexcept { inner.deallocate(s); }
  };

  fiber* new_fiber() {
    auto f = std::make_unique<fiber>();
    f->home = this;
    f->context = boost::context::fiber(
        std::allocator_arg,
        recording_stack{boost::context::protected_fixedsize_stack(m_stack_size), f.get()},
        [this](boost::context::fiber&& from) {
          arrived(std::move(from));
          if (!m_exiting)
            m_loop(m_loop_ctx);
          // The loop returned: the worker stops (or this idle fiber was told to end). Back to
          // the thread's own context; Boost frees this stack once it is left.
          fiber* self = m_current;
          m_current = &m_main;
          m_retired = self;
          load_exceptions(m_main);
#if defined(OFFLOAD_TSAN_FIBERS)
          __tsan_switch_to_fiber(m_main.tsan, 0);
#endif
          return std::move(m_main.context);
        });
#if defined(OFFLOAD_TSAN_FIBERS)
    f->tsan = __tsan_create_fiber(0);
#endif
    m_fibers.store(m_fibers.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    return f.release();
  }

  /// Switches from m_current to `to`; `then` runs on `to` right after the switch.
  void switch_to(fiber* to, after then) {
    fiber* from = m_current;
    m_from = from;
    m_after = then;
    m_current = to;
    save_exceptions(*from);
    load_exceptions(*to);
#if defined(OFFLOAD_TSAN_FIBERS)
    __tsan_switch_to_fiber(to->tsan, 0);
#endif
    boost::context::fiber back = std::move(to->context).resume();
    // Running again as `from` (on this worker: fibers never migrate).
    arrived(std::move(back));
  }

  /// First thing on the fiber that got control: stores the context of the fiber that left
  /// (`from`) and runs the after-switch action.
  void arrived(boost::context::fiber&& from) noexcept {
    if (m_retired != nullptr) {  // a fiber that ended (Boost freed its stack): forget it
      delete_record(std::exchange(m_retired, nullptr));
      return;
    }
    fiber* left = m_from;
    left->context = std::move(from);
    switch (m_after) {
      case after::nothing:
        break;
      case after::arm:
        m_arm->arm(left);
        break;
      case after::idle:
        if (m_idle_count >= k_max_idle) {
          retire(left);  // enough spares: give the stack back
        } else {
          left->next = m_idle;
          m_idle = left;
          ++m_idle_count;
        }
        break;
    }
  }

  fiber* take_idle() noexcept {
    fiber* f = m_idle;
    if (f != nullptr) {
      m_idle = f->next;
      --m_idle_count;
    }
    return f;
  }

  /// Ends an idle fiber from another one: destroying its context unwinds its stack (Boost
  /// throws forced_unwind at its suspension point, in the worker loop, outside any task) and
  /// frees it; control then comes back here.
  void retire(fiber* f) noexcept {
    save_exceptions(*m_current);
    load_exceptions(*f);
#if defined(OFFLOAD_TSAN_FIBERS)
    __tsan_switch_to_fiber(f->tsan, 0);
#endif
    { boost::context::fiber doomed = std::move(f->context); }
#if defined(OFFLOAD_TSAN_FIBERS)
    __tsan_switch_to_fiber(m_current->tsan, 0);
#endif
    load_exceptions(*m_current);
    delete_record(f);
  }

  static void save_exceptions([[maybe_unused]] fiber& f) noexcept {
#if defined(OFFLOAD_FIBER_EH_SWAP)
    f.exceptions = *thread_exception_state();
#endif
  }
  static void load_exceptions([[maybe_unused]] const fiber& f) noexcept {
#if defined(OFFLOAD_FIBER_EH_SWAP)
    *thread_exception_state() = f.exceptions;
#endif
  }

  fiber* take_ready() noexcept {
    if (m_ready_local == nullptr && m_ready.load(std::memory_order_relaxed) != nullptr) {
      // [F2] acquire; pairs with [F1]: every pushed fiber's link is visible. Taking the whole
      // stack at once (no pop of one node) leaves no ABA window.
      fiber* lifo = m_ready.exchange(nullptr, std::memory_order_acquire);
      while (lifo != nullptr) {  // reverse: resume in the order they were woken
        fiber* n = lifo->next;
        lifo->next = m_ready_local;
        m_ready_local = lifo;
        lifo = n;
      }
    }
    fiber* f = m_ready_local;
    if (f != nullptr)
      m_ready_local = f->next;
    return f;
  }

  /// Ends every idle fiber: each is resumed with m_exiting set, returns from its loop and
  /// switches back here.
  void release_idle() noexcept {
    m_exiting = true;
    while (fiber* f = take_idle()) {
      m_current = &m_main;
      switch_to(f, after::nothing);
    }
  }

  void delete_record(fiber* f) noexcept {
#if defined(OFFLOAD_TSAN_FIBERS)
    __tsan_destroy_fiber(f->tsan);
#endif
    m_fibers.store(m_fibers.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
    delete f;
  }

  std::size_t m_stack_size;
  event_count* m_wake;
  loop_fn m_loop = nullptr;
  void* m_loop_ctx = nullptr;
  fiber m_main;                // the worker thread's own context
  fiber* m_current = nullptr;  // running now
  fiber* m_from = nullptr;     // the fiber that just switched away (for arrived())
  after m_after = after::nothing;
  suspend_arm* m_arm = nullptr;  // the armer of the fiber that is suspending
  fiber* m_retired = nullptr;    // a fiber whose loop ended, to delete once it is left
  static constexpr std::size_t k_max_idle = 16;  // spare fibers kept per worker
  fiber* m_idle = nullptr;  // loop fibers parked between tasks, ready to take over
  std::size_t m_idle_count = 0;
  fiber* m_ready_local = nullptr;  // woken fibers taken from m_ready, FIFO
  fiber* m_yielded = nullptr;      // fibers in this_task::yield(), FIFO
  fiber* m_yielded_tail = nullptr;
  std::uint64_t m_starts = 0;  // tasks the worker loop started (for yield)
  static constexpr std::uint32_t k_ready_streak = 32;
  std::uint32_t m_ready_streak = 0;      // woken fibers resumed in a row
  std::atomic<fiber*> m_ready{nullptr};  // woken fibers pushed by any thread (LIFO)
  std::atomic<std::uint32_t> m_suspended{0};
  std::atomic<std::uint32_t> m_wakers{0};  // make_ready() calls in progress
  std::atomic<std::size_t> m_fibers{0};    // fibers alive (not counting m_main); owner-written
  bool m_exiting = false;
};

}  // namespace offload::detail
