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

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <utility>

#include <boost/context/fiber.hpp>

#include "offload/detail/event_count.hpp"
#include "offload/detail/fiber_stack.hpp"
#include "offload/detail/fiber_switch_annotations.hpp"
#include "offload/detail/fiber_wake.hpp"
#include "offload/lane.hpp"

#if defined(__GLIBCXX__) && !defined(__ARM_EABI_UNWINDER__)
#include <cxxabi.h>
// The C++ runtime keeps "exceptions being handled" per thread (the Itanium ABI's
// __cxa_eh_globals); each fiber gets its own copy, swapped on every switch, so a task may wait
// inside a catch block or while unwinding.
#define OFFLOAD_FIBER_EH_SWAP 1
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
struct fiber : fiber_handle {
  boost::context::fiber context;  ///< the saved context while not running (empty while running)
  exception_state exceptions;     ///< its exception state while it is not running
  std::uint64_t yield_mark = 0;   ///< tasks started on the worker when it yielded
  stack_bounds stack;             ///< usable stack (null low: the thread's, when unknown)
  fiber_sanitizer_state sanitizer;
};

/// One worker's fibers. Every member is for the owning worker thread only, except
/// make_ready(), which any thread may call, and the constructor and prepare(), which run before
/// the worker starts.
///
/// Life of a fiber: made with a guarded stack (prepare(), or when a task suspends and no idle or
/// woken fiber can take over); runs the worker loop; when its task waits, it is suspended and
/// another fiber carries on; once woken it runs again on this worker and, when its task ends,
/// goes back to the loop; surplus fibers (more than k_max_idle idle) and, at the end, every
/// fiber are destroyed from another fiber, which unwinds their stacks (Boost's forced_unwind),
/// so that no fiber ever ends by returning from its entry function (ThreadSanitizer's shadow
/// stacks stay balanced, and AddressSanitizer sees every switch).
class fiber_runtime final : public fiber_wake_list {
 public:
  /// Runs the worker loop on a fresh fiber; the loop runs on the same fiber until that fiber
  /// waits. `loop(ctx)` returns when the worker should stop.
  using loop_fn = void (*)(void* ctx);

  fiber_runtime(std::size_t stack_size, event_count& wake) noexcept
      : fiber_wake_list(wake), m_stack_size(stack_size) {}
  fiber_runtime(const fiber_runtime&) = delete;
  fiber_runtime& operator=(const fiber_runtime&) = delete;
  ~fiber_runtime() {
    if (m_first_stack.sp != nullptr)  // prepared, never run (the executor failed to start)
      guarded_stack(m_stack_size, nullptr).deallocate(m_first_stack);
  }

  /// Maps the first fiber's stack now, on the calling thread, so that a worker that cannot get
  /// one fails the executor's construction instead of its thread. Throws std::system_error (the
  /// guarded stack could not be mapped).
  void prepare() {
    if (m_first_stack.sp == nullptr)
      m_first_stack = guarded_stack(m_stack_size, &m_first_bounds).allocate();
  }

  /// On the worker thread's own stack: runs `loop` on fibers until it returns; then ends every
  /// fiber. Precondition: prepare() ran; no fiber of this worker is suspended in a wait when the
  /// loop returns (suspended() == 0).
  void run(loop_fn loop, void* ctx) {
    m_loop = loop;
    m_loop_ctx = ctx;
    m_main.home = this;
    m_main.stack = current_thread_stack();
    sanitizer_fiber_created(m_main.sanitizer, true);
    m_current = &m_main;
    fiber* first = new_fiber(&m_first_stack);  // adopts the prepared stack: cannot fail for it
    switch_to(first, after::nothing);
    // The loop fiber that saw the stop switched back here (see new_fiber()); it and every idle
    // fiber are unwound and freed.
    m_current = &m_main;
    retire(m_from);
    while (fiber* f = take_idle()) retire(f);
    sanitizer_fiber_destroyed(m_main.sanitizer, true);
  }

  /// The fiber running now; null outside run().
  fiber* current() const noexcept { return m_current; }

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

  /// The stack of the fiber (or thread) running now; the thread's before run().
  const stack_bounds& current_stack() const noexcept {
    return m_current != nullptr ? m_current->stack : m_main.stack;
  }

  /// Suspends the calling task's fiber: the worker goes on with an idle fiber, a woken one, or a
  /// new one (in that order), on which `a.arm(suspended)` runs first. Returns once
  /// make_ready(suspended) was called and this worker resumed it. Thread-locals that other tasks
  /// change meanwhile (the task context) are the caller's to save and restore. Throws (nothing
  /// changed) when no fiber can take over: std::system_error when a guarded stack cannot be
  /// mapped, std::bad_alloc. Precondition: can_suspend().
  void suspend(suspend_arm& a) {
    fiber* next = take_idle();
    bool woken = false;
    if (next == nullptr) {
      next = take_ready();
      woken = next != nullptr;
    }
    if (next == nullptr)
      next = new_fiber();  // may throw: nothing changed
    m_arm = &a;
    // Owner-written gauge, read by health(): one more suspended, and one fewer if the fiber
    // taking over was itself suspended.
    m_suspended.store(m_suspended.load(std::memory_order_relaxed) + (woken ? 0 : 1),
                      std::memory_order_relaxed);
    switch_to(next, after::arm);
    // Resumed by the worker loop (resume_ready) or by another suspend() on this same worker.
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
    if (m_yielded_tail != nullptr) {
      m_yielded_tail->next = f;
    } else {
      m_yielded = f;
    }
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
      m_yielded = as_fiber(f->next);
      if (m_yielded == nullptr)
        m_yielded_tail = nullptr;
    }
    return resume(f);
  }

  /// Tasks suspended in a wait on this worker (owner-written; any thread may read).
  std::uint32_t suspended() const noexcept {
    return m_suspended.load(std::memory_order_relaxed);
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

  /// A new fiber on a new guarded stack, or on `prepared` (prepare()'s, which it takes).
  fiber* new_fiber(boost::context::stack_context* prepared = nullptr) {
    auto f = std::make_unique<fiber>();
    f->home = this;
    boost::context::stack_context stack;
    if (prepared != nullptr) {
      stack = std::exchange(*prepared, {});
      f->stack = m_first_bounds;
    } else {
      stack = guarded_stack(m_stack_size, &f->stack).allocate();  // throws: nothing to undo
    }
    sanitizer_fiber_created(f->sanitizer, false);
    // Making the context runs Boost's entry code on the new stack up to its first jump back: a
    // switch there and back, as far as the sanitizers are concerned.
    before_switch(m_current->sanitizer, f->sanitizer, f->stack);
    f->context = boost::context::fiber(std::allocator_arg,
                                       boost::context::preallocated(stack.sp, stack.size, stack),
                                       guarded_stack(m_stack_size, nullptr),
                                       [this](boost::context::fiber&& from) {
                                         arrived(std::move(from));
                                         m_loop(m_loop_ctx);
                                         // The worker stops: back to the thread's own context in
                                         // run(), which destroys this fiber from there (unwinding
                                         // this stack). Never returns.
                                         switch_to(&m_main, after::nothing);
                                         return boost::context::fiber();  // not reached
                                       });
    after_switch(m_current->sanitizer, nullptr);
#if OFFLOAD_TSAN
    __tsan_switch_to_fiber(m_current->sanitizer.tsan, 0);  // before_switch() moved TSan to f
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
    before_switch(from->sanitizer, to->sanitizer, to->stack);
    boost::context::fiber back;
    try {
      back = std::move(to->context).resume();
    } catch (const boost::context::detail::forced_unwind&) {
      // This fiber is being destroyed by retire(), which runs on m_current: its stack unwinds
      // to the entry function, then control goes back there for good.
      after_switch(from->sanitizer, nullptr);
      before_dying_switch(from->sanitizer, m_current->stack);
      throw;
    }
    // Running again as `from` (on this worker: fibers never migrate).
    arrived(std::move(back));
  }

  /// First thing on the fiber that got control: the sanitizers' side of the switch, the context
  /// of the fiber that left (`m_from`) and the after-switch action.
  void arrived(boost::context::fiber&& from) noexcept {
    fiber* left = m_from;
    after_switch(m_current->sanitizer, &left->stack);
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
      m_idle = as_fiber(f->next);
      --m_idle_count;
    }
    return f;
  }

  /// Ends a fiber suspended in switch_to() from the running one: destroying its context resumes
  /// it with Boost's forced_unwind, which unwinds its stack (outside any task: idle and exiting
  /// fibers wait in the worker loop) and frees it; control then comes back here.
  void retire(fiber* f) noexcept {
    save_exceptions(*m_current);
    load_exceptions(*f);
    before_switch(m_current->sanitizer, f->sanitizer, f->stack);
    { boost::context::fiber doomed = std::move(f->context); }
    after_switch(m_current->sanitizer, nullptr);
    release_dead_fake_stack(m_current->stack, f->sanitizer);
#if OFFLOAD_TSAN
    __tsan_switch_to_fiber(m_current->sanitizer.tsan, 0);  // before_switch() moved TSan to f
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
      fiber* lifo = as_fiber(m_ready.exchange(nullptr, std::memory_order_acquire));
      while (lifo != nullptr) {  // reverse: resume in the order they were woken
        fiber* n = as_fiber(lifo->next);
        lifo->next = m_ready_local;
        m_ready_local = lifo;
        lifo = n;
      }
    }
    fiber* f = m_ready_local;
    if (f != nullptr)
      m_ready_local = as_fiber(f->next);
    return f;
  }

  /// Every fiber_handle of this runtime's lists is a fiber.
  static fiber* as_fiber(fiber_handle* h) noexcept {
    return static_cast<fiber*>(h);
  }

  void delete_record(fiber* f) noexcept {
    sanitizer_fiber_destroyed(f->sanitizer, false);
    m_fibers.store(m_fibers.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
    delete f;
  }

  std::size_t m_stack_size;
  loop_fn m_loop = nullptr;
  void* m_loop_ctx = nullptr;
  boost::context::stack_context m_first_stack{};  // mapped by prepare(), taken by run()
  stack_bounds m_first_bounds{};
  fiber m_main;                // the worker thread's own context
  fiber* m_current = nullptr;  // running now
  fiber* m_from = nullptr;     // the fiber that just switched away (for arrived())
  after m_after = after::nothing;
  suspend_arm* m_arm = nullptr;                  // the armer of the fiber that is suspending
  static constexpr std::size_t k_max_idle = 16;  // spare fibers kept per worker
  fiber* m_idle = nullptr;  // loop fibers parked between tasks, ready to take over
  std::size_t m_idle_count = 0;
  fiber* m_ready_local = nullptr;  // woken fibers taken from m_ready, FIFO
  fiber* m_yielded = nullptr;      // fibers in this_task::yield(), FIFO
  fiber* m_yielded_tail = nullptr;
  std::uint64_t m_starts = 0;  // tasks the worker loop started (for yield)
  static constexpr std::uint32_t k_ready_streak = 32;
  std::uint32_t m_ready_streak = 0;  // woken fibers resumed in a row
  std::atomic<std::uint32_t> m_suspended{0};
  std::atomic<std::size_t> m_fibers{0};  // fibers alive (not counting m_main); owner-written
};

}  // namespace offload::detail
