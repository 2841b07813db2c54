#pragma once

/// @file policy_task.hpp
/// @brief The task wrapper for tasks with policies: deadline, retries with backoff, dead letters,
/// de-duplication keys. Plain tasks never pay for it.

#include <cstdlib>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>

#include "offload/clock.hpp"
#include "offload/dead_letter.hpp"
#include "offload/detail/saturating_time.hpp"
#include "offload/detail/shared_state.hpp"
#include "offload/detail/shared_text.hpp"
#include "offload/detail/task_node.hpp"
#include "offload/error.hpp"
#include "offload/future.hpp"
#include "offload/retry_policy.hpp"
#include "offload/task_events.hpp"
#include "offload/task_options.hpp"
#include "offload/this_task.hpp"

namespace offload::detail {

/// A dead letter's kept callable: runs the task again as a fresh submission.
class replayable {
 public:
  virtual ~replayable() = default;
  virtual std::function<void()> callable() const = 0;
  /// Bytes this object takes (the callable's own size: what its captures own is not seen).
  virtual std::size_t footprint() const noexcept = 0;
  retry_policy retry;
};

template <class F>
class replayable_callable final : public replayable {
 public:
  explicit replayable_callable(F f) : m_fn(std::move(f)) {}
  std::size_t footprint() const noexcept override { return sizeof(*this); }
  std::function<void()> callable() const override {
    return [f = m_fn]() mutable {
      (void)f();
    };
  }

 private:
  F m_fn;
};

/// What a policy task needs from its executor.
class policy_host {
 public:
  virtual clock::time_point timer_now() const noexcept = 0;
  /// Takes a retry: puts it into the timer, due at `due`, or, once the executor stops accepting
  /// retries (shutdown), resolves it as cancelled at once. Either way the failed attempt is
  /// counted as not final on the calling thread before the node can be seen anywhere else, so a
  /// cancel() that resolves the waiting retry at once finds this attempt's accounting done.
  /// `state`, if any, is the task's future state, which owns the entry: once it is ready
  /// (cancelled), the entry is taken back at once. `watch`: its entries are not watched yet.
  virtual void schedule_retry(clock::time_point due,
                              task_node* node,
                              shared_state_base* state,
                              bool watch) noexcept = 0;
  /// A uniform number in [0, 1] for jitter. Worker threads only.
  virtual double next_uniform() noexcept = 0;
  virtual void add_dead_letter(dead_letter d) noexcept = 0;
  /// The task holding de-duplication key `key` ended (null: no key).
  /// Only the holder named by `ticket` is released: a key already taken over by a later
  /// submission (after an expiry freed it) stays with that submission.
  virtual void release_key(const shared_text* key, std::uint64_t ticket) noexcept = 0;
  /// Takes a token of the plan's rate limit: returns nothing if one was available now, else the
  /// time at which the token taken (reserved) for this task becomes available.
  virtual std::optional<clock::time_point> take_token(const struct task_plan& plan) = 0;
  /// Takes a task that found no token, as schedule_retry() does (not a retry: attempts
  /// unchanged; counted as deferred).
  virtual void schedule_wait(clock::time_point due,
                             task_node* node,
                             shared_state_base* state,
                             bool watch) noexcept = 0;

 protected:
  ~policy_host() = default;
};

/// A task's policy: what its attempts share and never change. Either interned by the executor
/// (home == null: shared by every submission with the same retry policy, name, lane and rate
/// limit, immutable, freed with the executor) or, when it carries per-submission data (a deadline,
/// a key) or a retry_if predicate (not comparable), owned by one task in a pooled block.
/// Interning is what keeps a never-failing policy task close to a plain task's cost: the
/// submitter writes no plan, and workers read a plan every core already holds in cache.
struct task_plan {
  retry_policy retry;
  clock::time_point deadline = clock::time_point::max();  // max: none
  text_ref name;                                          // null: unnamed
  text_ref key;                                           // null: no de-duplication
  std::uint64_t key_ticket = 0;                           // which holding of the key this task is
  float rate_per_second = 0;                              // 0: no rate limit
  float rate_burst = 1;
  offload::lane lane = offload::lane::normal;
  policy_host* host = nullptr;  // the executor
  block_pool* home = nullptr;   // the pool its block returns to; null: interned (not freed here)

  bool has_deadline() const noexcept { return deadline != clock::time_point::max(); }
  bool rate_limited() const noexcept { return rate_per_second > 0; }

  /// Frees a plan made by make_plan(); leaves an interned plan alone.
  struct deleter {
    void operator()(const task_plan* p) const noexcept {
      block_pool* pool = p->home;
      if (pool == nullptr)
        return;
      p->~task_plan();
      block_pool::deallocate(pool, const_cast<task_plan*>(p));
    }
  };
};
static_assert(sizeof(task_plan) <= k_block_size && alignof(task_plan) <= k_cache_line);

using plan_ptr = std::unique_ptr<const task_plan, task_plan::deleter>;

/// A plan owned by one task, in a block of the calling thread's pool, filled in by `fill`.
template <class Fill>
plan_ptr make_plan(Fill&& fill) {
  pooled_block block = allocate_block();
  auto* p = ::new (block.memory) task_plan;
  p->home = block.home;
  plan_ptr owned(p);
  fill(*p);
  return owned;
}

/// Runs F with a plan: expires past the deadline, retries failures per the retry policy (the retry
/// waits in the executor's timer as a new node holding this object), dead-letters final failures,
/// resolves the future (if any) once, and frees the de-duplication key when the task ends.
template <class R, class F>
struct policy_task {
  state_ref<R> state;  // empty for post()
  std::optional<F> fn;
  plan_ptr plan;  // holds the executor (plan->host): no pointer of its own, to keep F inline
  unsigned attempt = 1;
  bool token_reserved = false;  // a token is reserved for the next start (after a rate wait)
  clock::time_point first_failure{};
  bool timers_watched = false;  // the executor takes the state's timer entries back once ready

  attempt_end operator()() {
    if (plan->has_deadline() && plan->host->timer_now() >= plan->deadline)
      return expire();
    if (plan->rate_limited() && !std::exchange(token_reserved, false)) {
      if (const auto due = plan->host->take_token(*plan)) {
        if (auto deferred = defer_until(*due))
          return *deferred;
      }
    }
    if (state && !state->try_start()) {  // cancelled or expired while waiting
      plan->host->release_key(plan->key.get(), plan->key_ticket);
      return state->state() == task_state::expired ? attempt_end::expired : attempt_end::cancelled;
    }
    if (state && state->cancel_requested()) {  // cancelled while running an earlier attempt
      state->store_exception(std::make_exception_ptr(offload::cancelled("offload: task cancelled")),
                             task_state::cancelled);
      return finish(task_outcome::cancelled);
    }
    std::exception_ptr error;
    {
      const task_context_scope context({state ? state.get() : nullptr, attempt});
      try {
        if constexpr (std::is_void_v<R>) {
          (*fn)();
          if (state)
            state->store_value();
        } else {
          auto value = (*fn)();
          if (state)
            state->store_value(std::move(value));
        }
      } catch (...) {
        error = std::current_exception();
      }
    }
    if (!error)
      return finish(task_outcome::succeeded);
    if (state && honours_cancel(*state.get(), error)) {
      state->store_exception(std::move(error), task_state::cancelled);
      return finish(task_outcome::cancelled);
    }
    return on_failure(std::move(error));
  }

  void became_ready() noexcept {
    if (state)
      state->set_state(task_state::queued);
  }

  void discard(discard_reason) noexcept {
    plan->host->release_key(plan->key.get(), plan->key_ticket);
    if (state)
      state->cancel("offload: task cancelled by executor shutdown");
  }

 private:
  attempt_end expire() {
    plan->host->release_key(plan->key.get(), plan->key_ticket);
    if (state && state->try_claim()) {
      state->store_exception(std::make_exception_ptr(offload::expired(
                                 "offload: task expired: its deadline passed before it started")),
                             task_state::expired);
      fn.reset();
      state->publish();
    }
    return attempt_end::expired;
  }

  /// No rate-limit token until `due`: waits in the timer as a new node holding this object, with
  /// the token reserved. Returns nothing if that could not be arranged (out of memory): the task
  /// then starts now.
  std::optional<attempt_end> defer_until(clock::time_point due) {
    const offload::lane lane = plan->lane;
    text_ref name = plan->name;
    policy_host* const host = plan->host;  // *this (plan included) moves into the new node
    shared_state_base* const owner = state ? state.get() : nullptr;
    const bool watch = owner != nullptr && !std::exchange(timers_watched, true);
    token_reserved = true;
    task_node* node = nullptr;
    try {
      node = make_task(std::move(*this));
    } catch (...) {
      token_reserved = false;
      return std::nullopt;
    }
    fn.reset();  // the moved-from callable
    node->lane = lane;
    node->set_name(std::move(name));
    host->schedule_wait(due, node, owner, watch);
    return attempt_end::deferred;
  }

  attempt_end finish(task_outcome outcome) {
    plan->host->release_key(plan->key.get(), plan->key_ticket);
    fn.reset();  // captures destroyed before the result is published
    if (state)
      state->publish();
    return static_cast<attempt_end>(outcome);
  }

  bool wants_retry(const std::exception_ptr& error, clock::duration& delay) {
    bool asked = false;
    try {
      std::rethrow_exception(error);
    } catch (const retry_request& r) {
      delay = r.delay();
      asked = true;
    } catch (...) {
    }
    if (attempt >= plan->retry.max_attempts || (state && state->cancel_requested()))
      return false;
    if (!asked && plan->retry.retry_if) {
      try {
        if (!plan->retry.retry_if(error))
          return false;
      } catch (...) {
        return false;
      }
    }
    if (!asked)
      delay = retry_delay(plan->retry, attempt, plan->host->next_uniform());
    return true;
  }

  attempt_end on_failure(std::exception_ptr error) {
    const clock::time_point now = plan->host->timer_now();
    if (attempt == 1)
      first_failure = now;
    clock::duration delay{};
    if (wants_retry(error, delay)) {
      state_ref<R> keep = state ? state.copy() : state_ref<R>();
      const offload::lane lane = plan->lane;
      text_ref name = plan->name;
      policy_host* const host = plan->host;  // *this (plan included) moves into the new node
      const bool watch = keep && !std::exchange(timers_watched, true);
      ++attempt;
      task_node* node = nullptr;
      try {
        node = make_task(std::move(*this));
      } catch (...) {  // out of memory: this attempt's failure is final (*this is intact)
        --attempt;
        return fail(std::move(error), now);
      }
      fn.reset();  // the moved-from callable: nothing of this attempt outlives the retry's start
      node->lane = lane;
      node->set_name(std::move(name));
      if (keep)
        keep->release_for_retry();
      host->schedule_retry(saturating_add(now, delay), node, keep.get(), watch);
      return attempt_end::retried;
    }
    return fail(std::move(error), now);
  }

  attempt_end fail(std::exception_ptr error, clock::time_point now) {
    dead_letter d;
    d.name = plan->name ? *plan->name.text() : std::string();
    d.key = plan->key ? *plan->key.text() : std::string();
    d.attempts = attempt;
    d.lane = plan->lane;
    d.first_failure = first_failure;
    d.last_failure = now;
    try {
      d.error = exception_text(error);
      d.exception_type = exception_type_name(error);
      if constexpr (std::is_copy_constructible_v<F>) {
        auto r = std::make_shared<replayable_callable<F>>(*fn);
        r->retry = plan->retry;
        d.replay = std::move(r);
      }
    } catch (...) {  // out of memory while describing the failure: keep what we have
    }
    plan->host->add_dead_letter(std::move(d));
    tl_dead_letter_recorded = true;
    note_failure(error);  // for the failure hooks, before the failure is published
    if (state)
      state->store_exception(std::move(error));
    return finish(task_outcome::failed);
  }
};

}  // namespace offload::detail
