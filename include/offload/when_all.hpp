#pragma once

/// @file when_all.hpp
/// @brief offload::when_all and offload::when_any: futures that complete when all, or any, of
/// their inputs complete.

#include <atomic>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <tuple>
#include <utility>
#include <vector>

#include "offload/future.hpp"

namespace offload {

/// The value of a when_any future: which input finished first, and all the inputs (the one at
/// `index` is ready; the others may still be running).
template <class Sequence>
struct when_any_result {
  std::size_t index;
  Sequence futures;
};

namespace detail {

/// Fires `on_ready()` of a shared combinator when one input completes.
template <class Combinator>
struct input_ready final : continuation {
  input_ready(std::shared_ptr<Combinator> c, std::size_t i) : combinator(std::move(c)), index(i) {}
  void fire() noexcept override { combinator->on_ready(index); }
  bool runs_user_code() const noexcept override { return false; }  // moves futures, publishes
  std::shared_ptr<Combinator> combinator;
  std::size_t index;
};

/// Shared by the inputs of when_all: the last input to complete resolves the output.
template <class Sequence>
struct all_combinator {
  all_combinator(Sequence f, std::size_t count, state_ref<Sequence> o)
      : futures(std::move(f)), remaining(count), out(std::move(o)) {}
  Sequence futures;
  std::atomic<std::size_t> remaining;
  state_ref<Sequence> out;
  void on_ready(std::size_t) noexcept {
    // acq_rel: the last decrement sees every input's completion before moving the futures.
    if (remaining.fetch_sub(1, std::memory_order_acq_rel) != 1)
      return;
    if (!out->try_claim())
      return;  // the output future was cancelled
    try {
      out->set_value(std::move(futures));
    } catch (...) {
      out->set_exception(std::current_exception());
    }
  }
};

/// Shared by the inputs of when_any: the first input to complete resolves the output.
template <class Sequence>
struct any_combinator {
  any_combinator(Sequence f, state_ref<when_any_result<Sequence>> o)
      : futures(std::move(f)), out(std::move(o)) {}
  Sequence futures;
  state_ref<when_any_result<Sequence>> out;
  void on_ready(std::size_t index) noexcept {
    if (!out->try_claim())
      return;  // not the first (or the output was cancelled)
    try {
      out->set_value(when_any_result<Sequence>{index, std::move(futures)});
    } catch (...) {
      out->set_exception(std::current_exception());
    }
  }
};

template <class T>
state_ref<T> make_output_state() {
  state_ref<T> out(shared_state<T>::create(nullptr));
  return out;  // holds one of the two initial references; the caller's future adopts the other
}

// The input states are collected before any continuation is attached: attaching to a ready input
// fires at once, and when_any's first firing moves the futures out of the combinator. The states
// stay alive meanwhile, owned by those futures inside the output state the caller's future holds.

template <class Combinator>
void attach_vector(const std::shared_ptr<Combinator>& c) {
  std::vector<shared_state_base*> states;
  states.reserve(c->futures.size());
  for (auto& f : c->futures) states.push_back(future_access::state(f));
  for (std::size_t i = 0; i < states.size(); ++i) {
    states[i]->attach(new input_ready<Combinator>(c, i));
  }
}

template <class Combinator, std::size_t... I>
void attach_tuple(const std::shared_ptr<Combinator>& c, std::index_sequence<I...>) {
  shared_state_base* states[] = {future_access::state(std::get<I>(c->futures))...};
  (states[I]->attach(new input_ready<Combinator>(c, I)), ...);
}

}  // namespace detail

/// A future of all the inputs, ready when every input is ready (with a value, an exception or a
/// cancellation: get() each element to see which). The inputs are moved in.
template <class... T>
future<std::tuple<future<T>...>> when_all(future<T>... inputs) {
  using seq = std::tuple<future<T>...>;
  auto out = detail::make_output_state<seq>();
  auto mine = detail::make_future(detail::state_ref<seq>(out.get()));
  // One extra count, dropped below, so that no input can resolve the output before all are
  // attached.
  auto c = std::make_shared<detail::all_combinator<seq>>(
      seq(std::move(inputs)...), sizeof...(T) + 1, std::move(out));
  detail::attach_tuple(c, std::index_sequence_for<T...>{});
  c->on_ready(0);  // drops the extra count
  return mine;
}

/// Vector form of when_all.
template <class T>
future<std::vector<future<T>>> when_all(std::vector<future<T>> inputs) {
  using seq = std::vector<future<T>>;
  auto out = detail::make_output_state<seq>();
  auto mine = detail::make_future(detail::state_ref<seq>(out.get()));
  const std::size_t n = inputs.size();
  auto c = std::make_shared<detail::all_combinator<seq>>(std::move(inputs), n + 1, std::move(out));
  detail::attach_vector(c);
  c->on_ready(0);
  return mine;
}

/// A future that is ready when the first input is ready.
template <class... T>
future<when_any_result<std::tuple<future<T>...>>> when_any(future<T>... inputs) {
  static_assert(sizeof...(T) > 0, "offload::when_any() needs at least one future");
  using seq = std::tuple<future<T>...>;
  using result = when_any_result<seq>;
  auto out = detail::make_output_state<result>();
  auto mine = detail::make_future(detail::state_ref<result>(out.get()));
  auto c = std::make_shared<detail::any_combinator<seq>>(seq(std::move(inputs)...), std::move(out));
  detail::attach_tuple(c, std::index_sequence_for<T...>{});
  return mine;
}

/// Vector form of when_any. Throws std::invalid_argument for an empty vector (nothing would
/// ever make it ready).
template <class T>
future<when_any_result<std::vector<future<T>>>> when_any(std::vector<future<T>> inputs) {
  if (inputs.empty())
    throw std::invalid_argument("offload::when_any: the vector of futures is empty");
  using seq = std::vector<future<T>>;
  using result = when_any_result<seq>;
  auto out = detail::make_output_state<result>();
  auto mine = detail::make_future(detail::state_ref<result>(out.get()));
  auto c = std::make_shared<detail::any_combinator<seq>>(std::move(inputs), std::move(out));
  detail::attach_vector(c);
  return mine;
}

}  // namespace offload
