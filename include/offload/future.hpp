#pragma once

/// @file future.hpp
/// @brief offload::future<T> and offload::promise<T>: one-shot results over a lock-free state.

#include <chrono>
#include <exception>
#include <future>
#include <optional>
#include <type_traits>
#include <utility>

#include "offload/detail/saturating_time.hpp"
#include "offload/detail/shared_state.hpp"
#include "offload/detail/task_node.hpp"
#include "offload/error.hpp"
#include "offload/task_state.hpp"
#include "offload/this_task.hpp"

namespace offload {

template <class T>
class future;
template <class T>
class shared_future;
template <class T>
class promise;

namespace detail {

/// Owning pointer to a shared state (intrusive reference count).
template <class T>
class state_ref {
 public:
  state_ref() = default;
  /// Adopts one reference the caller already holds.
  explicit state_ref(shared_state<T>* s) noexcept : m_state(s) {}
  state_ref(state_ref&& o) noexcept : m_state(std::exchange(o.m_state, nullptr)) {}
  state_ref& operator=(state_ref&& o) noexcept {
    if (this != &o) {
      reset();
      m_state = std::exchange(o.m_state, nullptr);
    }
    return *this;
  }
  ~state_ref() { reset(); }
  state_ref copy() const noexcept {
    if (m_state)
      m_state->add_ref();
    return state_ref(m_state);
  }
  void reset() noexcept {
    if (m_state)
      std::exchange(m_state, nullptr)->release();
  }
  shared_state<T>* get() const noexcept { return m_state; }
  shared_state<T>* operator->() const noexcept { return m_state; }
  explicit operator bool() const noexcept { return m_state != nullptr; }

 private:
  shared_state<T>* m_state = nullptr;
};

/// True if `e`, thrown by a running task, is its answer to a cancellation: the task's future was
/// cancelled and the task threw offload::cancelled (this_task::stop_requested(), then throw).
/// The task then ended cancelled; offload::cancelled thrown without a cancel is a failure.
inline bool honours_cancel(const shared_state_base& state, const std::exception_ptr& e) noexcept {
  if (!state.cancel_requested())
    return false;
  try {
    std::rethrow_exception(e);
  } catch (const offload::cancelled&) {
    return true;
  } catch (...) {
    return false;
  }
}

/// Runs `fn()` and stores its result (or exception) into `state` without publishing it; returns
/// succeeded, failed if `fn` threw, or cancelled if it threw offload::cancelled after its future
/// was cancelled (honours_cancel()). Precondition: the caller holds the claim.
template <class T, class F>
task_outcome store_result(shared_state<T>& state, F&& fn) noexcept {
  try {
    if constexpr (std::is_void_v<T>) {
      std::forward<F>(fn)();
      state.store_value();
    } else {
      state.store_value(std::forward<F>(fn)());
    }
    return task_outcome::succeeded;
  } catch (...) {
    std::exception_ptr e = std::current_exception();
    if (honours_cancel(state, e)) {
      state.store_exception(std::move(e), task_state::cancelled);
      return task_outcome::cancelled;
    }
    note_failure(e);  // described before the failure is published
    state.store_exception(std::move(e));
    return task_outcome::failed;
  }
}

/// A queued task that produces a future's result. Cancelled futures are skipped, not run.
/// The callable is destroyed before the result is published.
template <class T, class F>
struct producing_task {
  state_ref<T> state;
  std::optional<F> fn;
  void became_ready() noexcept { state->set_state(task_state::queued); }  // left a delay timer
  task_outcome operator()() {
    if (!state->try_start())
      return task_outcome::cancelled;  // cancelled while queued: never runs
    const task_context_scope context({state.get(), 1});
    const task_outcome outcome = store_result(*state.get(), *fn);
    fn.reset();
    state->publish();
    return outcome;
  }
  void discard(discard_reason) noexcept {
    state->cancel("offload: task cancelled by executor shutdown (shutdown_mode::cancel)");
  }
};

template <class T>
future<T> make_future(state_ref<T> s) noexcept;

/// The result type of a continuation `F` applied to a future<T>'s value.
template <class T, class F>
struct then_result {
  using type = std::invoke_result_t<F&, T>;
};
template <class F>
struct then_result<void, F> {
  using type = std::invoke_result_t<F&>;
};
template <class T, class F>
using then_result_t = typename then_result<T, std::decay_t<F>>::type;

/// The result type of a continuation `F` applied to a shared_future<T>'s value (const T&).
template <class T, class F>
struct shared_then_result {
  using type = std::invoke_result_t<F&, const T&>;
};
template <class F>
struct shared_then_result<void, F> {
  using type = std::invoke_result_t<F&>;
};
template <class T, class F>
using shared_then_result_t = typename shared_then_result<T, std::decay_t<F>>::type;

}  // namespace detail

/// The result of a task (or of a promise), available once.
///
/// get() blocks until the result is ready and then returns it or rethrows the task's exception
/// unchanged. Inside a worker, waiting helps run other tasks, so a pool of one worker never
/// deadlocks on its own futures. Move-only; `valid()` is false after get(), then() or a move.
/// Not thread-safe: one thread uses a given future object at a time (the state it refers to is
/// safe to complete, cancel and attach to concurrently).
template <class T>
class future {
 public:
  future() = default;

  bool valid() const noexcept { return static_cast<bool>(m_state); }

  /// True once the result (a value, an exception, or a cancellation) is available.
  bool is_ready() const {
    check();
    return m_state->is_ready();
  }

  /// Blocks until ready; inside a worker, runs other tasks meanwhile.
  void wait() const {
    check();
    m_state->wait();
  }

  /// Blocks until ready or `timeout` passes. Never runs other tasks.
  template <class Rep, class Period>
  std::future_status wait_for(std::chrono::duration<Rep, Period> timeout) const {
    check();
    const auto deadline = detail::saturating_add(std::chrono::steady_clock::now(), timeout);
    return m_state->wait_until(deadline) ? std::future_status::ready : std::future_status::timeout;
  }

  /// Waits, then returns the value or rethrows the exception (offload::cancelled if cancelled).
  /// Invalidates the future.
  T get() {
    check();
    detail::state_ref<T> s = std::move(m_state);
    s->wait();
    if constexpr (std::is_void_v<T>) {
      s->take();
    } else {
      return s->take();
    }
  }

  /// Where the task is: queued, scheduled, running, retrying, or a terminal state (succeeded,
  /// failed, cancelled, expired) that never changes once reached.
  task_state state() const {
    check();
    return m_state->state();
  }

  /// Requests cancellation. A task that has not started (queued, delayed or waiting for a retry)
  /// never runs and get() throws offload::cancelled. A running task sees the request through
  /// offload::this_task::stop_requested() and is not retried. Returns true if this call took
  /// effect (the task will not run again), false if it is running or finished (or was cancelled
  /// before). Thread-safe with respect to the task.
  bool cancel() {
    check();
    return m_state->cancel("offload: task cancelled");
  }

  /// Chains `fn(T)` (or `fn()` for void) to run after this future succeeds, on the executor that
  /// ran this task (inline on the completing thread for a promise's future). If this future fails
  /// or is cancelled, `fn` never runs and the returned future holds the same exception.
  /// Invalidates this future.
  template <class F>
  future<detail::then_result_t<T, F>> then(F&& fn);

  /// A copyable handle on the same result, which any number of threads and tasks may wait for
  /// and read (std::future::share()). Invalidates this future.
  shared_future<T> share();

 private:
  template <class U>
  friend future<U> detail::make_future(detail::state_ref<U> s) noexcept;
  template <class U>
  friend class future;
  template <class U>
  friend class shared_future;
  friend struct future_access;

  explicit future(detail::state_ref<T> s) noexcept : m_state(std::move(s)) {}

  void check() const {
    if (!m_state)
      throw std::future_error(std::future_errc::no_state);
  }

  detail::state_ref<T> m_state;
};

/// Access for the library's own combinators (when_all, when_any, executor). Not for users.
struct future_access {
  template <class T>
  static detail::shared_state<T>* state(const future<T>& f) noexcept {
    return f.m_state.get();
  }
};

/// The producer side of a future that no task produces: set once by any thread.
/// A promise destroyed without a value sets std::future_error(broken_promise).
/// Setting a promise whose future was cancelled is a no-op. Not thread-safe (one setter).
template <class T>
class promise {
 public:
  promise() : m_state(detail::shared_state<T>::create(nullptr)) {}
  promise(promise&&) noexcept = default;
  promise& operator=(promise&& o) noexcept {
    if (this != &o) {
      abandon();
      m_state = std::move(o.m_state);
      m_future_taken = o.m_future_taken;
    }
    return *this;
  }
  ~promise() { abandon(); }

  /// The future of this promise; once only.
  future<T> get_future() {
    if (!m_state)
      throw std::future_error(std::future_errc::no_state);
    if (m_future_taken)
      throw std::future_error(std::future_errc::future_already_retrieved);
    m_future_taken = true;
    m_state->add_ref();
    return detail::make_future(detail::state_ref<T>(m_state.get()));
  }

  template <class... Args>
  void set_value(Args&&... args) {
    if (!claim())
      return;
    m_state->set_value(std::forward<Args>(args)...);
  }

  void set_exception(std::exception_ptr e) {
    if (!claim())
      return;
    m_state->set_exception(std::move(e));
  }

 private:
  // The state starts with two references: the promise's, and one reserved for the future.
  // get_future() takes a new one, so the reserved one is dropped here when unused.
  bool claim() {
    if (!m_state)
      throw std::future_error(std::future_errc::no_state);
    if (m_state->try_claim())
      return true;
    if (m_state->cancel_requested())
      return false;  // the consumer gave up: nothing to deliver
    throw std::future_error(std::future_errc::promise_already_satisfied);
  }
  void abandon() noexcept {
    if (!m_state)
      return;
    if (m_state->try_claim()) {
      m_state->set_exception(
          std::make_exception_ptr(std::future_error(std::future_errc::broken_promise)));
    }
    m_state->release();  // the reserved reference
    m_state.reset();     // the promise's own
  }

  detail::state_ref<T> m_state;
  bool m_future_taken = false;
};

namespace detail {

template <class T>
future<T> make_future(state_ref<T> s) noexcept {
  return future<T>(std::move(s));
}

/// The continuation created by future::then (and shared_future::then, `Shared`: the value is
/// passed as a const reference and left in place for the other copies): when the antecedent is
/// ready, schedules a task that runs `fn` on its value (or forwards its exception) into `result`.
template <class T, class U, class F, bool Shared = false>
struct then_step {
  state_ref<T> antecedent;
  state_ref<U> result;
  std::optional<F> fn;

  task_outcome operator()() {
    if (!result->try_start())
      return task_outcome::cancelled;  // the continuation's future was cancelled
    const task_outcome outcome = store_result(*result.get(), [this]() -> U {
      if constexpr (std::is_void_v<T>) {
        if constexpr (!Shared)
          antecedent->take();
        return (*fn)();
      } else if constexpr (Shared) {
        return (*fn)(antecedent->peek());
      } else {
        return (*fn)(std::move(antecedent->take()));
      }
    });
    fn.reset();  // destroyed before the result is published
    result->publish();
    return outcome;
  }
  void discard(discard_reason) noexcept {
    result->cancel("offload: continuation cancelled by executor shutdown");
  }
};

template <class T, class U, class F, bool Shared = false>
struct then_continuation final : continuation {
  explicit then_continuation(then_step<T, U, F, Shared> s) : step(std::move(s)) {}
  void fire() noexcept override {
    if (std::exception_ptr e = step.antecedent->exception()) {
      // `fn` will not run: the continuation's future takes the antecedent's outcome (its
      // exception, and failed, cancelled or expired) here, without a task.
      if (step.result->try_claim())
        step.result->set_exception(std::move(e), step.antecedent->state());
      return;
    }
    scheduler* sched = step.antecedent->owner();
    if (sched == nullptr) {
      step();
      return;
    }
    state_ref<U> result = step.result.copy();
    task_node* node = nullptr;
    try {
      node = make_task(std::move(step));
      sched->schedule(node);
    } catch (...) {
      // Out of memory, or the executor no longer accepts work (offload::rejected): resolve the
      // continuation's future with that reason rather than drop it.
      if (result->try_claim())
        result->set_exception(std::current_exception());
      if (node != nullptr)
        discard_task(node, discard_reason::rejected);
    }
  }
  bool runs_user_code() const noexcept override {
    // Forwarding a failure or queueing the step on the antecedent's executor runs none; only
    // the inline step of a promise's future (no executor) does.
    return !step.antecedent->exception() && step.antecedent->owner() == nullptr;
  }
  then_step<T, U, F, Shared> step;
};

}  // namespace detail

template <class T>
template <class F>
future<detail::then_result_t<T, F>> future<T>::then(F&& fn) {
  using U = detail::then_result_t<T, F>;
  check();
  detail::state_ref<T> antecedent = std::move(m_state);
  detail::shared_state<T>* raw = antecedent.get();
  detail::state_ref<U> result(detail::shared_state<U>::create(raw->owner()));
  detail::state_ref<U> for_caller = result.copy();
  result->release();  // states start with two references; this one has no producer yet
  auto* c = new detail::then_continuation<T, U, std::decay_t<F>>(
      {std::move(antecedent), std::move(result), std::forward<F>(fn)});
  raw->attach(c);
  return future<U>(std::move(for_caller));
}

}  // namespace offload

#include "offload/shared_future.hpp"  // shared_future and future::share(), which need future
