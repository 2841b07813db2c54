// offload/detail/bind.hpp: what a submitted callable becomes: its result type (call_result_t)
// and the nullary callable a task runs (bind).
#pragma once

#include <functional>
#include <stop_token>
#include <tuple>
#include <type_traits>
#include <utility>

#include "offload/detail/shared_state.hpp"
#include "offload/task.hpp"

namespace offload::detail {

/// True for a callable that takes the task's std::stop_token first (and not without it).
template <class F, class... Args>
inline constexpr bool k_takes_stop_token =
    !std::is_invocable_v<std::decay_t<F>, std::decay_t<Args>...> &&
    std::is_invocable_v<std::decay_t<F>, std::stop_token, std::decay_t<Args>...>;

/// SFINAE-friendly: no `type` for a callable that cannot be called so, which removes the
/// overload instead of failing inside it (a compiler that substitutes into a return type before
/// checking constraints, such as clang 14, would otherwise hard-error on submit(options, fn)).
template <class F, class... Args>
struct call_result {};
template <class F, class... Args>
requires std::is_invocable_v<std::decay_t<F>, std::decay_t<Args>...>
struct call_result<F, Args...> {
  using type = std::invoke_result_t<std::decay_t<F>, std::decay_t<Args>...>;
};
template <class F, class... Args>
requires k_takes_stop_token<F, Args...>
struct call_result<F, Args...> {
  using type = std::invoke_result_t<std::decay_t<F>, std::stop_token, std::decay_t<Args>...>;
};

/// What submitting fn(args...) yields: its result (fn may take the task's std::stop_token
/// first), or T for a coroutine returning task<T>.
template <class F, class... Args>
using call_result_t = typename unwrap_task<typename call_result<F, Args...>::type>::type;

/// The running task's stop token: stopped when its future is cancelled. A task without a future
/// (post) gets a token that never stops.
inline std::stop_token current_stop_token() {
  const shared_state_base* state = tl_task_context.state;
  return state != nullptr ? state->stop_token() : std::stop_token{};
}

/// bind()'s first step: fn with its arguments bound, as a nullary callable.
template <bool Repeatable, class F, class... Args>
auto bind_call(F&& fn, Args&&... args) {
  using fn_t = std::decay_t<F>;
  constexpr bool with_token = k_takes_stop_token<F, Args...>;
  if constexpr (sizeof...(Args) == 0 && !with_token) {
    return fn_t(std::forward<F>(fn));
  } else {
    // std::tuple of the decayed arguments, not std::make_tuple: a std::reference_wrapper stays
    // one and binds to a T& parameter in the call, as with std::async.
    return [fn = fn_t(std::forward<F>(fn)),
            tup = std::tuple<std::decay_t<Args>...>(
                std::forward<Args>(args)...)]() mutable -> decltype(auto) {
      return std::apply(
          [&fn](auto&... a) -> decltype(auto) {
            if constexpr (with_token) {
              if constexpr (Repeatable &&
                            std::is_invocable_v<fn_t&, std::stop_token, decltype(a)...>)
                return std::invoke(fn, current_stop_token(), a...);
              else
                return std::invoke(std::move(fn), current_stop_token(), std::move(a)...);
            } else {
              if constexpr (Repeatable && std::is_invocable_v<fn_t&, decltype(a)...>)
                return std::invoke(fn, a...);
              else
                return std::invoke(std::move(fn), std::move(a)...);
            }
          },
          tup);
    };
  }
}

/// The callable a task runs: `fn(args...)` (with the task's std::stop_token first if fn takes
/// one); for a coroutine (fn returns task<T>), a callable that runs the coroutine to its end
/// and returns its T. `Repeatable` (the policy path, whose retries call it again) passes the
/// bound arguments as lvalues when fn accepts them so, so that every attempt sees them intact;
/// otherwise they are moved into the one call, as by std::async.
template <bool Repeatable = false, class F, class... Args>
auto bind(F&& fn, Args&&... args) {
  auto call = bind_call<Repeatable>(std::forward<F>(fn), std::forward<Args>(args)...);
  if constexpr (is_task<std::invoke_result_t<decltype(call)&>>::value) {
    return [call = std::move(call)]() mutable {
      return call().run();
    };
  } else {
    return call;
  }
}

}  // namespace offload::detail
