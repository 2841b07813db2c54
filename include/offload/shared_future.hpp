#pragma once

/// @file shared_future.hpp
/// @brief offload::shared_future<T>: a result any number of threads and tasks wait for and read
/// (std::shared_future, folly's SharedPromise).

#include <chrono>
#include <exception>
#include <future>
#include <type_traits>
#include <utility>

#include "offload/detail/saturating_time.hpp"
#include "offload/detail/shared_state.hpp"
#include "offload/future.hpp"
#include "offload/task_state.hpp"

namespace offload {
namespace detail {

/// What shared_future<T>::get() returns: a const reference to the value, nothing for void.
template <class T>
struct shared_get {
  using type = const T&;
};
template <>
struct shared_get<void> {
  using type = void;
};

}  // namespace detail

/// A copyable handle on a task's result, made by future<T>::share().
///
/// Every copy refers to the same result: get() returns a const reference to the one value (or
/// rethrows the one exception) without consuming it, so 5000 tasks can wait on copies of one
/// shared_future. Waiting inside a task suspends the task's fiber, never its worker (as
/// future::wait() does). A copy is used by one thread at a time; distinct copies of one result
/// may be used from any number of threads at once. The value lives until the last copy is gone.
template <class T>
class shared_future {
 public:
  shared_future() = default;
  shared_future(const shared_future& o) noexcept : m_state(o.m_state.copy()) {}
  shared_future(shared_future&&) noexcept = default;
  shared_future& operator=(const shared_future& o) noexcept {
    if (this != &o)
      m_state = o.m_state.copy();
    return *this;
  }
  shared_future& operator=(shared_future&&) noexcept = default;
  ~shared_future() = default;

  /// Takes over `f`'s result, as f.share() does.
  shared_future(future<T>&& f) noexcept : m_state(std::move(f.m_state)) {}  // NOLINT: as std

  bool valid() const noexcept { return static_cast<bool>(m_state); }

  /// True once the result (a value, an exception, or a cancellation) is available.
  bool is_ready() const {
    check();
    return m_state->is_ready();
  }

  /// Blocks until ready; inside a worker, suspends the calling task (or helps run others).
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

  /// Waits, then returns the value (for void, nothing) or rethrows the exception (a copy of
  /// the same exception object for every caller; offload::cancelled if cancelled). The future
  /// stays valid: get() may be called again, from any copy.
  typename detail::shared_get<T>::type get() const {
    check();
    m_state->wait();
    if (std::exception_ptr e = m_state->exception())
      std::rethrow_exception(e);
    if constexpr (!std::is_void_v<T>)
      return m_state->peek();
  }

  /// Where the task is (see future::state()).
  task_state state() const {
    check();
    return m_state->state();
  }

  /// Requests cancellation of the task, as future::cancel() does, for every copy. Returns true
  /// if this call took effect.
  bool cancel() const {
    check();
    return m_state->cancel("offload: task cancelled");
  }

  /// Chains `fn(const T&)` (or `fn()` for void) to run after the result succeeds, on the
  /// executor that ran the task, as future::then() does; this shared_future stays valid, and
  /// each copy may chain its own continuations.
  template <class F>
  future<detail::shared_then_result_t<T, F>> then(F&& fn) const {
    using U = detail::shared_then_result_t<T, F>;
    check();
    detail::state_ref<T> antecedent = m_state.copy();
    detail::shared_state<T>* raw = antecedent.get();
    detail::state_ref<U> result(detail::shared_state<U>::create(raw->owner()));
    detail::state_ref<U> for_caller = result.copy();
    result->release();  // states start with two references; this one has no producer yet
    auto* c = new detail::then_continuation<T, U, std::decay_t<F>, true>(
        {std::move(antecedent), std::move(result), std::forward<F>(fn)});
    raw->attach(c);
    return detail::make_future(std::move(for_caller));
  }

 private:
  void check() const {
    if (!m_state)
      throw std::future_error(std::future_errc::no_state);
  }

  detail::state_ref<T> m_state;
};

template <class T>
shared_future<T> future<T>::share() {
  check();
  return shared_future<T>(std::move(*this));
}

}  // namespace offload
