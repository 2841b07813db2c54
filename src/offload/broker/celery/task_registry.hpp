#pragma once

/// @file
/// @brief The named tasks a Celery worker serves: each a C++ function whose typed parameters are
/// read from the message's args and kwargs (Python's binding rules) and whose result is stored
/// as JSON, with the offload::task_options it runs under.

#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <offload/broker/celery/python_json.hpp>
#include <offload/broker/celery/result_document.hpp>
#include <offload/task_options.hpp>

namespace offload::broker::celery {

/// What a running task may read of its message: a task function that takes `const
/// task_request&` as its first parameter gets it.
struct task_request {
  std::string id;
  std::string task;
  std::int64_t retries = 0;  ///< retries before this attempt (0 on the first)
  std::string hostname;      ///< the worker's node name
  std::optional<std::string> parent_id;
  std::optional<std::string> root_id;
};

/// Thrown by a task to fail with a Python exception of its choice: the client raises
/// `module.type(*args)` (module "builtins" for ValueError and the like; empty module: Celery
/// makes up a class of that name).
class task_error : public std::runtime_error {
 public:
  task_error(std::string type, std::string message, std::string module = "builtins")
      : std::runtime_error(message), m_type(std::move(type)), m_module(std::move(module)) {}
  const std::string& type() const noexcept { return m_type; }
  const std::string& module() const noexcept { return m_module; }

 private:
  std::string m_type;
  std::string m_module;
};

/// Thrown by a task to be run again later, as Celery's `self.retry()`: the message is sent again
/// with the same id and retries + 1, after `countdown` (unset: the task's retry_policy backoff).
/// Past the policy's max_attempts the task fails with `reason` (a RuntimeError in Python).
class retry : public std::runtime_error {
 public:
  explicit retry(std::string reason = "retry requested",
                 std::optional<std::chrono::milliseconds> countdown = std::nullopt)
      : std::runtime_error(std::move(reason)), m_countdown(countdown) {}
  const std::optional<std::chrono::milliseconds>& countdown() const noexcept { return m_countdown; }

 private:
  std::optional<std::chrono::milliseconds> m_countdown;
};

/// The Python exception a C++ exception stands for: task_error as it says; std::invalid_argument
/// and std::domain_error ValueError, std::out_of_range IndexError, std::length_error and
/// std::overflow_error/underflow_error OverflowError (length: ValueError), std::bad_alloc
/// MemoryError, other std::exception RuntimeError, anything else an "UnknownCppException".
remote_exception to_remote_exception(const std::exception_ptr& e);

namespace detail {

template <class F>
struct signature : signature<decltype(&F::operator())> {};
template <class R, class... A>
struct signature<R (*)(A...)> {
  using result = R;
  using params = std::tuple<A...>;
};
template <class R, class... A>
struct signature<R(A...)> : signature<R (*)(A...)> {};
template <class C, class R, class... A>
struct signature<R (C::*)(A...) const> : signature<R (*)(A...)> {};
template <class C, class R, class... A>
struct signature<R (C::*)(A...)> : signature<R (*)(A...)> {};

template <class Tuple>
struct first_is_request : std::false_type {};
template <class A0, class... A>
struct first_is_request<std::tuple<A0, A...>>
    : std::is_same<std::remove_cvref_t<A0>, task_request> {};

/// A task function's shape: its parameters, its result, whether it takes the request first, and
/// how many parameters are bound from the message.
template <class F>
struct call_shape {
  using params = typename signature<std::decay_t<F>>::params;
  using result = typename signature<std::decay_t<F>>::result;
  static constexpr bool takes_request = first_is_request<params>::value;
  static constexpr std::size_t bound = std::tuple_size_v<params> - (takes_request ? 1 : 0);
};

template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};

[[noreturn]] void throw_type_error(std::string text);
const char* json_type_name(const json& v) noexcept;

/// `v` as T, or a TypeError naming the task, the parameter and the types.
template <class T>
T convert(const json& v, std::string_view task, std::string_view param) {
  const auto wrong = [&](const char* wanted) {
    throw_type_error(std::string(task) + "() argument '" + std::string(param) + "' must be " +
                     wanted + ", not " + json_type_name(v));
  };
  if constexpr (std::is_same_v<T, json>) {
    return v;
  } else if constexpr (is_optional<T>::value) {
    if (v.is_null())
      return std::nullopt;
    return convert<typename T::value_type>(v, task, param);
  } else if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean())
      wrong("a bool");
    return v.get<bool>();
  } else if constexpr (std::is_integral_v<T>) {
    if (!v.is_number_integer())
      wrong("an int");
    const bool negative = !v.is_number_unsigned() && v.get<std::int64_t>() < 0;
    const bool fits =
        negative
            ? std::is_signed_v<T> && v.get<std::int64_t>() >= std::numeric_limits<T>::min()
            : v.get<std::uint64_t>() <= static_cast<std::uint64_t>(std::numeric_limits<T>::max());
    if (!fits)
      throw_type_error(std::string(task) + "() argument '" + std::string(param) +
                       "' = " + v.dump() + " is out of range");
    return negative ? static_cast<T>(v.get<std::int64_t>())
                    : static_cast<T>(v.get<std::uint64_t>());
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!v.is_number())
      wrong("a number");
    return v.get<T>();
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!v.is_string())
      wrong("a str");
    return v.get<std::string>();
  } else {
    try {
      return v.get<T>();
    } catch (const json::exception& e) {
      throw_type_error(std::string(task) + "() argument '" + std::string(param) +
                       "' could not be read: " + e.what());
    }
  }
}

/// The value of parameter i: positional if there, else by name, else (optional) null.
const json& bind_argument(std::string_view task,
                          const std::vector<std::string>& names,
                          std::size_t i,
                          const json& args,
                          const json& kwargs,
                          bool optional);
/// Python's "takes N positional arguments", "unexpected keyword argument" checks.
void check_arguments(std::string_view task,
                     const std::vector<std::string>& names,
                     const json& args,
                     const json& kwargs);

}  // namespace detail

/// One registered task.
struct registered_task {
  std::string name;
  std::vector<std::string> params;
  offload::task_options options;
  /// Binds args/kwargs, runs the function, returns its result as JSON. Throws what the function
  /// throws, or task_error TypeError for arguments that do not bind.
  std::function<json(const task_request&, const json& args, const json& kwargs)> call;
};

class task_registry {
 public:
  /// Registers `fn` as task `name` with parameter names `params` (one per parameter after an
  /// optional leading `const task_request&`). Parameters are JSON-convertible types; a
  /// std::optional one may be left out. The result is stored as `json(result)` (void: null).
  /// `options` (lane, retry, rate, name) apply to every run; its retry policy is Celery's
  /// max_retries and backoff. Throws std::invalid_argument for a duplicate or empty name, a
  /// parameter count that does not match, or invalid options.
  template <class F>
  task_registry& add(std::string name,
                     std::vector<std::string> params,
                     F fn,
                     offload::task_options options = {}) {
    using shape = detail::call_shape<F>;
    constexpr std::size_t bound = shape::bound;
    if (params.size() != bound)
      throw std::invalid_argument("celery task '" + name + "': " + std::to_string(bound) +
                                  " parameters need " + std::to_string(bound) + " names, got " +
                                  std::to_string(params.size()));
    registered_task t;
    t.name = name;
    t.params = params;
    t.options = std::move(options);
    t.call = [fn = std::move(fn), name, params](
                 const task_request& req, const json& args, const json& kwargs) -> json {
      detail::check_arguments(name, params, args, kwargs);
      return invoke<shape::takes_request, typename shape::params, typename shape::result>(
          fn, req, name, params, args, kwargs, std::make_index_sequence<shape::bound>{});
    };
    insert(std::move(t));
    return *this;
  }

  /// Null if no task has that name.
  const registered_task* find(std::string_view name) const;
  std::vector<std::string> names() const;  ///< sorted
  bool empty() const noexcept { return m_tasks.empty(); }

 private:
  template <bool TakesRequest, class Params, class R, class F, std::size_t... I>
  static json invoke(const F& fn,
                     const task_request& req,
                     const std::string& name,
                     const std::vector<std::string>& params,
                     const json& args,
                     const json& kwargs,
                     std::index_sequence<I...>) {
    constexpr std::size_t skip = TakesRequest ? 1 : 0;
    auto values = std::make_tuple(
        detail::convert<std::remove_cvref_t<std::tuple_element_t<I + skip, Params>>>(
            detail::bind_argument(
                name,
                params,
                I,
                args,
                kwargs,
                detail::is_optional<
                    std::remove_cvref_t<std::tuple_element_t<I + skip, Params>>>::value),
            name,
            params[I])...);
    const auto call = [&](auto&&... a) -> decltype(auto) {
      if constexpr (TakesRequest)
        return fn(req, std::forward<decltype(a)>(a)...);
      else
        return fn(std::forward<decltype(a)>(a)...);
    };
    if constexpr (std::is_void_v<R>) {
      std::apply(call, std::move(values));
      return nullptr;
    } else {
      return json(std::apply(call, std::move(values)));
    }
  }

  void insert(registered_task t);

  std::map<std::string, registered_task, std::less<>> m_tasks;
};

}  // namespace offload::broker::celery
