#pragma once

/// @file plan_table.hpp
/// @brief plan_table: interned task plans, one per distinct shareable policy, so that a policy
/// task that never fails costs close to a plain task (see task_plan).

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "offload/clock.hpp"
#include "offload/detail/policy/policy_task.hpp"
#include "offload/detail/shared_text.hpp"
#include "offload/detail/thread_annotations.hpp"
#include "offload/detail/thread_cache.hpp"
#include "offload/lane.hpp"
#include "offload/retry_policy.hpp"
#include "offload/task_options.hpp"

namespace offload::detail {

/// Thread-safe. Interned plans live as long as the table; a thread's last plan is cached, so a
/// loop submitting one policy takes the lock once.
class plan_table {
 public:
  /// Beyond this many distinct shareable policies, each submission gets a plan of its own.
  static constexpr std::size_t k_max_interned = 4096;

  plan_table() = default;
  plan_table(const plan_table&) = delete;
  plan_table& operator=(const plan_table&) = delete;

  /// The plan of a policy submission: the interned one for its policy, name, lane and rate
  /// limit, or a plan of its own when it has a deadline, a key or a retry_if predicate (or when
  /// the table is full). `name`: the submission's interned name; `host`: what its attempts call.
  plan_ptr plan_for(const task_options& o,
                    offload::lane lane,
                    const text_ref& name,
                    const text_ref& key,
                    std::uint64_t ticket,
                    policy_host* host) {
    const auto fill = [&](task_plan& p) {
      p.retry = o.retry;
      if (o.deadline)
        p.deadline = *o.deadline;
      p.name = name;
      p.key = key;
      p.key_ticket = ticket;
      p.lane = lane;
      p.host = host;
      if (o.rate) {
        p.rate_per_second = static_cast<float>(o.rate->per_second);
        p.rate_burst = static_cast<float>(o.rate->burst);
      }
    };
    if (o.deadline || key || o.retry.retry_if)
      return make_plan(fill);
    const signature sig{o.retry.max_attempts,
                        o.retry.backoff,
                        o.retry.jitter,
                        lane,
                        o.retry.base_delay,
                        o.retry.max_delay,
                        name.get(),
                        o.rate ? o.rate->per_second : 0.0,
                        o.rate ? o.rate->burst : 0.0};
    if (const cached* last = cache::find(m_uid); last != nullptr && last->sig == sig)
      return plan_ptr(last->plan);
    scoped_lock lock(m_mutex);
    auto it = m_plans.find(sig);
    if (it == m_plans.end()) {
      if (m_plans.size() >= k_max_interned)
        return make_plan(fill);
      auto shared = std::make_unique<task_plan>();
      fill(*shared);  // home stays null: interned
      it = m_plans.emplace(sig, std::move(shared)).first;
    }
    cache::put(m_uid, cached{sig, it->second.get()});
    return plan_ptr(it->second.get());
  }

  /// Plans interned now.
  std::size_t size() const {
    scoped_lock lock(m_mutex);
    return m_plans.size();
  }

 private:
  /// What makes two shareable plans the same. `host` is not part of it: a table serves one host.
  struct signature {
    unsigned max_attempts;
    offload::backoff backoff;
    offload::jitter jitter;
    offload::lane lane;
    clock::duration base_delay;
    clock::duration max_delay;
    const shared_text* name;  // the record's identity: an interned plan holds it
    double rate_per_second;
    double rate_burst;
    bool operator==(const signature&) const = default;
    struct hash {
      std::size_t operator()(const signature& s) const noexcept {
        std::size_t h = std::hash<const shared_text*>{}(s.name);
        for (const std::size_t v : {std::size_t{s.max_attempts},
                                    static_cast<std::size_t>(s.backoff),
                                    static_cast<std::size_t>(s.jitter),
                                    static_cast<std::size_t>(s.lane),
                                    static_cast<std::size_t>(s.base_delay.count()),
                                    static_cast<std::size_t>(s.max_delay.count()),
                                    std::hash<double>{}(s.rate_per_second),
                                    std::hash<double>{}(s.rate_burst)})
          h = h * 1000003u ^ v;
        return h;
      }
    };
  };

  /// A thread's last interned plan of this table.
  struct cached {
    signature sig{};
    const task_plan* plan = nullptr;
  };
  struct cache_tag;
  using cache = thread_cache<cache_tag, cached>;

  const std::uint64_t m_uid = next_cache_uid();  // this table in the threads' caches
  mutable annotated_mutex m_mutex;               // a thread's first submission of a new signature
  std::unordered_map<signature, std::unique_ptr<task_plan>, signature::hash> m_plans
      OFFLOAD_GUARDED_BY(m_mutex);
};

}  // namespace offload::detail
