#pragma once

/// @file shared_state.hpp
/// @brief The state shared by a future and its producer (a task or a promise): an atomic state
/// machine, a result slot and a lock-free list of continuations.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <stop_token>
#include <thread>
#include <type_traits>
#include <utility>
#include <variant>

#include "offload/detail/atomic.hpp"
#include "offload/detail/block_pool.hpp"
#include "offload/detail/continuation.hpp"
#include "offload/detail/event_count.hpp"
#include "offload/detail/scheduler.hpp"
#include "offload/error.hpp"
#include "offload/task_state.hpp"

namespace offload::detail {

/// Resumes a waiting fiber when the state it waits on becomes ready. Lives on the waiting
/// fiber's stack, which outlives it: the fiber resumes only after fire().
struct fiber_resume final : continuation {
  fiber_handle* waiter = nullptr;
  fiber_resume() noexcept { heap_owned = false; }
  void fire() noexcept override { fiber_wake_list::make_ready(waiter); }
  bool runs_user_code() const noexcept override { return false; }
};

/// What a follower state (the future of a de-duplicated submission, which receives a copy of the
/// one task's result) knows of the task it follows. Owned by the follower state.
struct follow_link {
  virtual ~follow_link() = default;
  /// The followed task's reported state (never terminal: the follower's own result decides).
  virtual task_state leader_state() const noexcept = 0;
  /// The follower was cancelled before the result arrived. Called once, by that cancel().
  virtual void follower_cancelled() noexcept = 0;
};

/// Type-independent part of a shared state.
///
/// Roles: one producer (the task, or the promise) writes the result; one consumer (the future)
/// reads it; any thread may attach continuations or call cancel().
/// Guarantee: the producer's writes to the result happen-before any consumer or continuation
/// that observes `ready` ([S1] → [S2]/[S3]).
class shared_state_base {
 public:
  explicit shared_state_base(scheduler* sched) noexcept : m_scheduler(sched) {}
  shared_state_base(const shared_state_base&) = delete;
  shared_state_base& operator=(const shared_state_base&) = delete;

  scheduler* owner() const noexcept { return m_scheduler; }

  bool is_ready() const noexcept {
    // [S2] acquire; pairs with [S1] in publish(): the result is visible once ready is seen.
    return m_phase.load(std::memory_order_acquire) == k_ready;
  }

  /// Claims the right to run: pending → running. False if cancelled (or already claimed).
  /// The reported state follows (state() reads `running` from the phase), so starting a task
  /// costs this one atomic read-modify-write.
  bool try_start() noexcept {
    auto expected = k_pending;
    // acq_rel: the winner of pending → {running, claimed} is the single writer of the result;
    // pairs with release_for_retry()'s release store and with the other claimants' CASes ([K2]).
    return m_phase.compare_exchange_strong(
        expected, k_running, std::memory_order_acq_rel, std::memory_order_relaxed);
  }

  /// Gives the claim back for a retry: running → pending, so that cancel() can claim it while
  /// the retry waits. Only the claim holder (the running task) calls it.
  void release_for_retry() noexcept {
    set_state(task_state::retrying);
    // release; pairs with the acq_rel CAS of the next try_start()/try_claim(): what this attempt
    // wrote is visible to whoever claims next.
    m_phase.store(k_pending, std::memory_order_release);
  }

  /// The task's reported state (future::state()). A follower reports the followed task's state
  /// until its own result arrives.
  task_state state() const noexcept {
    if (const follow_link* l = link(); l != nullptr && !is_ready())
      return l->leader_state();
    // [S2] acquire, as in is_ready(); pairs with [S1] and with release_for_retry()'s release
    // store. Once the phase is ready, m_state holds the terminal state publish() stored before
    // [S1]; after a retry released the claim, it holds `retrying` (or `queued` once requeued).
    // While the task holds its run claim the phase alone says `running`; otherwise (pending, or
    // claimed by a cancel about to publish) m_state says queued, scheduled or retrying.
    if (m_phase.load(std::memory_order_acquire) == k_running)
      return task_state::running;
    // acquire; pairs with the release CAS in set_state() and the release store in publish().
    return m_state.load(std::memory_order_acquire);
  }

  /// Moves the reported state unless it is already terminal (terminal states never change).
  /// `running` is never stored: state() derives it from the phase.
  void set_state(task_state next) noexcept {
    task_state cur = m_state.load(std::memory_order_relaxed);
    while (!is_terminal(cur)) {
      // release; pairs with the acquire in state(). Terminal states are set only by publish().
      if (m_state.compare_exchange_weak(
              cur, next, std::memory_order_release, std::memory_order_relaxed)) {
        return;
      }
    }
  }

  /// Claims the right to set the result without running: pending → claimed.
  bool try_claim() noexcept {
    auto expected = k_pending;
    // [K2] acq_rel / acquire on failure: a failed claim sees the winner's writes before its CAS,
    // such as [K1].
    return m_phase.compare_exchange_strong(
        expected, k_claimed, std::memory_order_acq_rel, std::memory_order_acquire);
  }

  /// Resolves a pending state with offload::cancelled. True if it took effect.
  bool cancel(const char* why) noexcept {
    // [K1] relaxed; published by the release half of the claim CAS below, which a producer whose
    // claim fails reads with acquire ([K2] in try_claim()).
    m_cancel_requested.store(true, std::memory_order_relaxed);
    request_stop();
    if (!try_claim())
      return false;
    store_exception(make_cancelled(why), task_state::cancelled);
    publish();
    if (follow_link* l = link())
      l->follower_cancelled();
    return true;
  }

  /// True if cancel() was called. A producer whose claim failed uses it to tell "the consumer
  /// cancelled" (ignore) from "already satisfied" (an error).
  bool cancel_requested() const noexcept {
    return m_cancel_requested.load(std::memory_order_relaxed);
  }

  /// A std::stop_token stopped by cancel() (a running task that takes one sees the request).
  /// Made on first use: only tasks that take a token pay for it. Throws std::bad_alloc.
  std::stop_token stop_token() const {
    std::stop_source source(std::nostopstate);
    {
      std::lock_guard lock(stop_guard());
      if (!m_stop.stop_possible())
        m_stop = std::stop_source();
      source = m_stop;
    }
    // cancel() stored the flag before taking the guard (it is then seen here), or takes the
    // guard after us (and stops the token there). Stopping twice is harmless.
    if (cancel_requested())
      source.request_stop();
    return source.get_token();
  }

  /// Stores an exception as the result and publishes it; the caller holds the claim.
  void set_exception(std::exception_ptr e, task_state final_state = task_state::failed) noexcept {
    store_exception(std::move(e), final_state);
    publish();
  }

  /// Stores an exception without publishing (see publish()); the caller holds the claim.
  /// `final_state` is how the task ended, the state reported once published: failed for an
  /// exception the task threw (whatever its type, offload::cancelled included), cancelled or
  /// expired when the library resolved it without running it.
  void store_exception(std::exception_ptr e, task_state final_state = task_state::failed) noexcept {
    m_exception = std::move(e);
    m_final = final_state;
  }

  /// Blocks until ready. In a task on a worker: runs the task's own spawns while there are any,
  /// then suspends the task's fiber until ready (or, without fibers, helps run other work).
  /// Elsewhere: spins briefly, then sleeps.
  [[gnu::always_inline]] void wait() const {
    if (is_ready())
      return;
    if (scheduler* s = tl_current_scheduler) {
      // Usually the awaited task is the newest in this worker's deque: running it is the whole
      // wait. Inlined into get(), so that a chain of nested waits (fork-join recursion) costs
      // one call frame per level here.
      if (s->run_local_task() && is_ready())
        return;
      wait_in_worker(*s);
      return;
    }
    wait_outside();
  }

 private:
  [[gnu::noinline]] void wait_outside() const {
    for (int i = 0; i < k_spin_before_block; ++i) {
      if (is_ready())
        return;
      cpu_relax();
    }
    for (int i = 0; i < k_yield_before_block; ++i) {
      if (is_ready())
        return;
      std::this_thread::yield();
    }
    block_until_ready(std::chrono::steady_clock::time_point::max());
  }

 public:
  /// Waits until ready or `deadline`; true if ready. Never helps (bounded time matters more).
  bool wait_until(std::chrono::steady_clock::time_point deadline) const {
    if (is_ready())
      return true;
    return block_until_ready(deadline);
  }

  /// Attaches a continuation; fires it at once if already ready. Takes ownership of heap-owned
  /// ones. Thread-safe.
  void attach(continuation* c) noexcept {
    continuation* head = m_continuations.load(std::memory_order_acquire);
    for (;;) {
      if (head == closed()) {
        c->next = nullptr;
        fire_continuations(c);
        return;
      }
      c->next = head;
      // [S4] release; pairs with the acq_rel exchange [S3] in publish(), which takes the list.
      if (m_continuations.compare_exchange_weak(
              head, c, std::memory_order_release, std::memory_order_acquire)) {
        return;
      }
    }
  }

  /// Adds an owner. Only a current owner (or code acting for one, such as the key table under
  /// its mutex) may call it: release() relies on a count of 1 meaning nobody else can add one.
  void add_ref() noexcept { m_refs.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    // A count of 1 read by an owner means it is the only one left: no other thread holds a
    // reference, so none can add or drop one, and the read-modify-write can be skipped (one of
    // the two releases of every future's state is such a last one).
    // [S5'] acquire; pairs with [S5] of the owner that dropped the count to 1: its writes happen
    // before our destroy().
    if (m_refs.load(std::memory_order_acquire) == 1) {
      destroy();
      return;
    }
    // [S5] acq_rel; the last owner sees every other owner's writes before destroying.
    if (m_refs.fetch_sub(1, std::memory_order_acq_rel) == 1)
      destroy();
  }

  std::exception_ptr exception() const noexcept { return m_exception; }

  /// Makes the stored result visible, wakes blocked waiters and fires continuations. Called once,
  /// by the claim holder, after store_value()/store_exception().
  /// (Tasks destroy their callable between storing and publishing, so a waiter never returns
  /// while the task's captures are still being destroyed.)
  void publish() noexcept {
    m_state.store(terminal_state(), std::memory_order_release);  // pairs with state()'s acquire
    // [S1] seq_cst store: release half pairs with [S2]; the seq_cst order pairs with the waiter's
    // seq_cst increment of m_waiters [W1]: either we see the waiter below, or it sees `ready`.
    m_phase.store(k_ready, std::memory_order_seq_cst);
    if (m_waiters.load(std::memory_order_seq_cst) != 0)
      futex_wake(m_phase, INT32_MAX);
    // [S3] acq_rel: acquire pairs with [S4] (the continuations' contents); release publishes the
    // closed marker for attach().
    continuation* list = m_continuations.exchange(closed(), std::memory_order_acq_rel);
    if (list != nullptr)
      fire_continuations(list);
  }

 protected:
  virtual ~shared_state_base() = default;
  virtual void destroy() noexcept = 0;
  /// What a follower (see follower_state) follows; null for every other state.
  virtual follow_link* link() const noexcept { return nullptr; }

 private:
  // A waiter outside the pool polls k_spin_before_block times (about 2.5 µs; enough for a hot
  // round trip), then yields k_yield_before_block times, then sleeps on the futex. The yields
  // matter on a loaded machine: a worker woken onto the waiter's CPU runs at once instead of
  // waiting for the spin to end (a long pure spin quadrupled the cold round trip's p50).
  static constexpr int k_spin_before_block = 128;
  static constexpr int k_yield_before_block = 16;

  /// The terminal state of the stored result: how the task ended (see store_exception()).
  task_state terminal_state() const noexcept {
    if (!m_exception)
      return task_state::succeeded;
    return m_final == task_state::succeeded ? task_state::failed : m_final;
  }

  /// Stops the token of stop_token(), if one was made (after m_cancel_requested was set).
  void request_stop() noexcept {
    std::stop_source source(std::nostopstate);
    try {
      std::lock_guard lock(stop_guard());
      source = m_stop;
    } catch (const std::system_error&) {  // the guard could not be locked: no token to stop
      return;
    }
    // Outside the guard: the task's std::stop_callbacks run here and may cancel other states.
    if (source.stop_possible())
      source.request_stop();
  }

  /// Guards m_stop: one of a few shared mutexes (cancellation and tokens are rare paths, and a
  /// mutex per state would double its size).
  std::mutex& stop_guard() const noexcept {
    static std::mutex guards[16];
    return guards[(reinterpret_cast<std::uintptr_t>(this) / 64) % 16];
  }

  static continuation* closed() noexcept {
    static_assert(alignof(continuation) > 1);
    return reinterpret_cast<continuation*>(std::uintptr_t{1});
  }
  void wait_in_worker(scheduler& s) const {
    struct arm_resume final : suspend_arm {
      const shared_state_base* state;
      fiber_resume resume;
      explicit arm_resume(const shared_state_base* st) noexcept : state(st) {}
      void arm(fiber_handle* suspended) noexcept override {
        resume.waiter = suspended;
        const_cast<shared_state_base*>(state)->attach(&resume);  // fires now if ready
      }
    } arm{this};
    while (!is_ready()) {
      if (s.run_local_task())
        continue;
      if (s.suspend(arm))
        continue;  // resumed: ready
      if (!s.help_until([this] {
            return is_ready();
          })) {
        refuse_wait();
      }
      return;
    }
  }
  static std::exception_ptr make_cancelled(const char* why) noexcept {
    try {
      return std::make_exception_ptr(offload::cancelled(why));
    } catch (...) {
      return std::current_exception();
    }
  }

  bool block_until_ready(std::chrono::steady_clock::time_point deadline) const {
    // [W1] seq_cst RMW; pairs with [S1]/the m_waiters load in publish().
    m_waiters.fetch_add(1, std::memory_order_seq_cst);
    bool ready = false;
    for (;;) {
      const auto phase = m_phase.load(std::memory_order_seq_cst);  // [W2] pairs with [S1]
      if (phase == k_ready) {
        ready = true;
        break;
      }
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline)
        break;
      const auto left = deadline == std::chrono::steady_clock::time_point::max()
                            ? std::chrono::nanoseconds::zero()
                            : std::chrono::nanoseconds(deadline - now);
      futex_wait(m_phase, phase, left);
    }
    m_waiters.fetch_sub(1, std::memory_order_relaxed);
    return ready;
  }

  // Life of a state: pending → running → ready (a task ran), or pending → claimed → ready
  // (cancel, promise, discard). `ready` is terminal. Also the futex word of blocked waiters.
  static constexpr std::uint32_t k_pending = 0, k_running = 1, k_claimed = 2, k_ready = 3;
  mutable std::atomic<std::uint32_t> m_phase{k_pending};
  mutable std::atomic<std::uint32_t> m_waiters{0};      // threads blocked in block_until_ready()
  std::atomic<std::uint32_t> m_refs{2};                 // the future and the producer
  std::atomic<continuation*> m_continuations{nullptr};  // LIFO list; closed() once ready
  scheduler* m_scheduler;                               // runs then() continuations; may be null
  std::exception_ptr m_exception;                       // written by the claim holder only
  std::atomic<bool> m_cancel_requested{false};          // set by cancel(), before its claim
  std::atomic<task_state> m_state{task_state::queued};  // reported; never running (see state())
  task_state m_final = task_state::succeeded;           // how it ended; written by the claim holder
  mutable std::stop_source m_stop{std::nostopstate};    // guarded by stop_guard()
};

// States of results up to 32 bytes (std::string among them) stay in a pooled block.
static_assert(sizeof(void*) != 8 || sizeof(shared_state_base) <= 64);

/// The value slot type: void results are stored as std::monostate.
template <class T>
using stored_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

/// Shared state holding a T. Allocated from the block pool when it fits, else from the heap.
template <class T>
class shared_state : public shared_state_base {
 public:
  static_assert(!std::is_reference_v<T>, "offload::future<T&> is not supported; use a pointer");

  static shared_state* create(scheduler* sched) {
    if constexpr (k_pooled) {
      static_assert(sizeof(shared_state) <= k_block_size);
      pooled_block block = allocate_block();
      return ::new (block.memory) shared_state(sched, block.home);
    } else {
      return new shared_state(sched, nullptr);
    }
  }

  /// Stores the value and publishes it; the caller holds the claim (running or claimed).
  template <class... Args>
  void set_value(Args&&... args) {
    store_value(std::forward<Args>(args)...);
    publish();
  }

  /// Stores the value without publishing (see publish()); the caller holds the claim.
  template <class... Args>
  void store_value(Args&&... args) {
    m_value.emplace(std::forward<Args>(args)...);
  }

  /// The stored value, left in place (de-duplicated tasks copy it to each follower).
  /// Precondition: is_ready() and no exception.
  const stored_t<T>& peek() const noexcept { return *m_value; }

  /// Moves the result out (or rethrows the exception). Precondition: is_ready().
  stored_t<T> take() {
    if (std::exception_ptr e = exception())
      std::rethrow_exception(e);
    return std::move(*m_value);
  }

 protected:
  static constexpr bool k_pooled = sizeof(shared_state_base) + sizeof(std::optional<stored_t<T>>) +
                                           sizeof(void*) + alignof(std::max_align_t) <=
                                       k_block_size &&
                                   alignof(stored_t<T>) <= alignof(std::max_align_t);

  shared_state(scheduler* sched, block_pool* home) noexcept
      : shared_state_base(sched), m_home(home) {}

  void destroy() noexcept override {
    if constexpr (k_pooled) {
      block_pool* home = m_home;
      this->~shared_state();
      block_pool::deallocate(home, this);
    } else {
      delete this;
    }
  }

  std::optional<stored_t<T>> m_value;
  block_pool* m_home;
};

}  // namespace offload::detail
