#pragma once

/// @file policy_engine.hpp
/// @brief policy_engine: the policy path of submit() and post() (retries, delays, deadlines,
/// de-duplication keys, rate limits) built on the pool's submission and timer, and what policy
/// tasks call back (policy_host).

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <typeinfo>
#include <utility>

#include "offload/clock.hpp"
#include "offload/dead_letter.hpp"
#include "offload/detail/policy/dead_letter_store.hpp"
#include "offload/detail/policy/key_table.hpp"
#include "offload/detail/policy/plan_table.hpp"
#include "offload/detail/policy/policy_task.hpp"
#include "offload/detail/policy/rate_limiter.hpp"
#include "offload/detail/pool/pool.hpp"
#include "offload/detail/saturating_time.hpp"
#include "offload/detail/shared_state.hpp"
#include "offload/detail/shared_text.hpp"
#include "offload/detail/task_node.hpp"
#include "offload/detail/thread_annotations.hpp"
#include "offload/detail/timer_service.hpp"
#include "offload/error.hpp"
#include "offload/future.hpp"
#include "offload/lane.hpp"
#include "offload/task_options.hpp"
#include "offload/task_state.hpp"

namespace offload::detail {

/// Thread-safe. Owns the key table, the interned plans and the rate limiter (each with its own
/// lock); sends dead letters to the store and timed entries to the pool.
class policy_engine final : private policy_host {
 public:
  policy_engine(pool& p, dead_letter_store& dead_letters) noexcept
      : m_pool(p), m_dead(dead_letters) {}
  policy_engine(const policy_engine&) = delete;
  policy_engine& operator=(const policy_engine&) = delete;

  /// The policy path of submit()/post() (`o` validated, o.needs_policy()): builds a
  /// policy_task and queues it now, at its delay (timer), with an expiry timer for a deadline;
  /// de-duplicates by key. Without `WithFuture` (a post()) the future returned is empty.
  /// Not checked by the thread-safety analysis: the key table's lock is held on the keyed
  /// branch only (its find(), next_ticket() and insert() require it), which the analysis cannot
  /// follow through std::unique_lock.
  template <class R, bool WithFuture, class Call>
  future<R> submit(const task_options& o, Call call) OFFLOAD_NO_THREAD_SAFETY_ANALYSIS {
    using call_t = Call;
    const offload::lane lane = m_pool.resolve_lane(o.lane);
    if (only_delayed(o)) {
      // A delay and nothing else: a plain task waits in the timer (no plan to allocate, so a
      // pending delayed post costs its pooled node and a heap entry).
      detail::task_node* node = nullptr;
      future<R> result;
      detail::shared_state_base* owner = nullptr;
      if constexpr (WithFuture) {
        detail::state_ref<R> state(detail::shared_state<R>::create(&m_pool));
        result = detail::make_future(detail::state_ref<R>(state.get()));
        state->set_state(task_state::scheduled);
        owner = state.get();
        node =
            detail::make_task(detail::producing_task<R, call_t>{std::move(state), std::move(call)});
      } else {
        node = detail::make_task(std::move(call));
      }
      node->lane = lane;
      node->set_name(m_pool.names().intern(o.name));
      m_pool.enqueue_at(node, m_pool.timers().after(o.delay), owner);
      if (owner != nullptr)
        m_pool.watch_timers(owner);
      return result;
    }
    // Sharing one task's result between the submissions of a key copies it to each.
    constexpr bool k_shareable =
        !WithFuture || std::is_void_v<R> || std::is_copy_constructible_v<R>;
    if constexpr (!k_shareable) {
      if (!o.key.empty()) {
        throw std::invalid_argument(
            "offload::task_options.key needs a copyable result type: every submission of the key "
            "gets a copy of the one task's result");
      }
    }
    detail::text_ref key;  // the key's record; null: no key
    detail::state_ref<R> state;
    future<R> result;
    std::unique_lock<annotated_mutex> key_lock(m_keys.mutex(), std::defer_lock);
    std::uint64_t ticket = 0;
    if constexpr (k_shareable) {
      if (!o.key.empty()) {
        key_lock.lock();
        if (key_entry* found = m_keys.find(std::string_view(o.key))) {
          key_entry& held = *found;
          if constexpr (!WithFuture) {
            // post() of a key that is pending: the pending task covers it, so it counts as a
            // submitter that never cancels (the task runs even if every future is cancelled).
            if (held.leader != nullptr)
              ++held.followers;
            return result;
          } else {
            if (held.leader == nullptr) {
              throw std::invalid_argument(
                  "offload::task_options.key '" + o.key +
                  "' is pending as a post(), which has no result to share; submit() it later");
            }
            if (*held.result_type != typeid(R)) {
              throw std::invalid_argument("offload::task_options.key '" + o.key +
                                          "' is pending with a different result type");
            }
            auto* leader = static_cast<detail::shared_state<R>*>(held.leader);
            future<R> joined = follow(leader, held.key, held.ticket);
            ++held.followers;  // after follow(), which may throw
            return joined;
          }
        }
        key = detail::text_ref::adopt(new detail::shared_text(o.key));
      }
      if constexpr (WithFuture) {
        // States start with two references: the task's (`state`) and a second one, which goes
        // to the caller's future, or for a key to the key table (the caller gets a follower).
        state = detail::state_ref<R>(detail::shared_state<R>::create(&m_pool));
        if (key) {
          ticket = m_keys.next_ticket();
          result = follow(state.get(), key, ticket);
          m_keys.insert(key_entry{key,
                                  ticket,
                                  state.get(),
                                  &typeid(R),
                                  [raw = state.get()] {
                                    detail::state_ref<R> drop(raw);  // adopts, then releases
                                  },
                                  1});
        } else {
          result = detail::make_future(detail::state_ref<R>(state.get()));
        }
      } else if (key) {
        ticket = m_keys.next_ticket();
        m_keys.insert(key_entry{key, ticket, nullptr, &typeid(void), {}});
      }
    } else {
      state = detail::state_ref<R>(detail::shared_state<R>::create(&m_pool));
      result = detail::make_future(detail::state_ref<R>(state.get()));
    }
    if (key_lock.owns_lock())
      key_lock.unlock();
    if (state && o.delay > clock::duration::zero())
      state->set_state(task_state::scheduled);
    detail::plan_ptr plan =
        m_plans.plan_for(o, lane, m_pool.names().intern(o.name), key, ticket, this);
    detail::text_ref name = plan->name;
    detail::state_ref<R> expiry = (state && o.deadline) ? state.copy() : detail::state_ref<R>();
    detail::shared_state_base* const owner = state.get();
    // Watched at once when it enters the timer now; a policy task watches on its first retry.
    const bool watched = owner != nullptr && (o.deadline || o.delay > clock::duration::zero());
    detail::task_node* node = nullptr;
    try {
      node = detail::make_task(detail::policy_task<R, call_t>{
          std::move(state), std::move(call), std::move(plan), 1, false, {}, watched});
    } catch (...) {
      release_key(key.get(), ticket);
      throw;
    }
    node->lane = lane;
    node->set_name(std::move(name));
    if (expiry) {
      detail::task_node* timer =
          detail::make_task(expire_action<R>{std::move(expiry), std::move(key), ticket, this});
      timer->lane = lane;
      bool armed = false;
      try {
        armed =
            m_pool.timers().schedule(*o.deadline, timer, detail::timer_kind::inline_, false, owner);
      } catch (...) {
      }
      if (!armed)
        detail::discard_task(timer, detail::discard_reason::shutdown);
    }
    struct watch_after {  // the watch is attached once the entries are in the timer, or not
      pool* p;
      detail::shared_state_base* state;
      ~watch_after() {
        if (state != nullptr)
          p->watch_timers(state);
      }
    } watch_guard{&m_pool, watched ? owner : nullptr};
    if (o.delay > clock::duration::zero()) {
      m_pool.enqueue_at(node, m_pool.timers().after(o.delay), owner);
    } else {
      try {
        m_pool.enqueue_or_throw(node, m_pool.current_worker());
      } catch (...) {
        detail::discard_task(node, detail::discard_reason::rejected);
        throw;
      }
    }
    return result;
  }

 private:
  static bool only_delayed(const task_options& o) noexcept {
    return o.delay > clock::duration::zero() && !needs_attempt_policy(o);
  }

  /// Resolves a de-duplicated follower from its leader's result (copy), unless cancelled.
  template <class R>
  struct copy_result final : continuation {
    copy_result(state_ref<R> from, state_ref<R> to)
        : source(std::move(from)), target(std::move(to)) {}
    void fire() noexcept override {
      if (!target->try_claim())
        return;  // the follower was cancelled
      if (std::exception_ptr e = source->exception()) {
        target->set_exception(std::move(e), source->state());
        return;
      }
      try {
        if constexpr (std::is_void_v<R>) {
          target->set_value();
        } else {
          target->set_value(source->peek());
        }
      } catch (...) {
        target->set_exception(std::current_exception());
      }
    }
    bool runs_user_code() const noexcept override {
      return !source->exception();  // a copy of the result runs R's copy constructor
    }
    state_ref<R> source;
    state_ref<R> target;
  };

  /// At the deadline: resolves a task that has not started with offload::expired.
  template <class R>
  struct expire_action {
    state_ref<R> state;
    text_ref key;  // released when the expiry takes effect (null: none)
    std::uint64_t ticket;
    policy_engine* engine;
    task_outcome operator()() {
      if (state->try_claim()) {
        engine->release_key(key.get(), ticket);
        state->store_exception(std::make_exception_ptr(offload::expired(
                                   "offload: task expired: its deadline passed before it started")),
                               task_state::expired);
        state->publish();
      }
      return task_outcome::expired;
    }
  };

  /// A new future that receives a copy of `leader`'s result: the future of a submission of the
  /// key held by ticket `ticket`. The caller holds the key table's lock and counts the follower.
  template <class R>
  future<R> follow(shared_state<R>* leader, const text_ref& key, std::uint64_t ticket) {
    leader->add_ref();
    state_ref<R> source(leader);
    state_ref<R> target(follower_state<R>::create(
        &m_pool, std::make_unique<key_follow_link>(&m_keys, leader, key, ticket)));
    state_ref<R> for_caller(target.get());
    leader->attach(new copy_result<R>(std::move(source), std::move(target)));
    return make_future(std::move(for_caller));
  }

  // policy_host
  clock::time_point timer_now() const noexcept override { return m_pool.timers().now(); }

  void schedule_retry(clock::time_point due,
                      task_node* node,
                      shared_state_base* state,
                      bool first_entry) noexcept override {
    m_pool.requeue_attempt(due, node, state, first_entry, true);
  }

  void schedule_wait(clock::time_point due,
                     task_node* node,
                     shared_state_base* state,
                     bool first_entry) noexcept override {
    m_pool.requeue_attempt(due, node, state, first_entry, false);
  }

  double next_uniform() noexcept override {
    thread_local xorshift32 rng(
        static_cast<std::uint32_t>(std::hash<std::thread::id>{}(std::this_thread::get_id()) | 1u));
    return static_cast<double>(rng.next()) / 4294967295.0;
  }

  void add_dead_letter(dead_letter d) noexcept override { m_dead.add_dead_letter(std::move(d)); }

  void release_key(const shared_text* key, std::uint64_t ticket) noexcept override {
    (void)m_keys.erase(key, ticket, false);
  }

  std::optional<clock::time_point> take_token(const task_plan& plan) override {
    const std::string bucket_key =
        plan.name ? "name:" + *plan.name.text() : "lane:" + std::string(to_string(plan.lane));
    return m_rates.take(bucket_key,
                        static_cast<double>(plan.rate_per_second),
                        static_cast<double>(plan.rate_burst),
                        m_pool.timers().now());
  }

  pool& m_pool;
  dead_letter_store& m_dead;
  key_table m_keys;
  plan_table m_plans;
  rate_limiter m_rates;
};

}  // namespace offload::detail
