#pragma once

/// @file result_store.hpp
/// @brief offload::result_store<T>: tasks found by id while they run and after they end, for the
/// 202 pattern (Celery's AsyncResult(id), in process).

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>

#include <concurrentqueue/concurrentqueue.h>

#include "offload/clock.hpp"
#include "offload/detail/continuation.hpp"
#include "offload/detail/task_id.hpp"
#include "offload/detail/task_node.hpp"
#include "offload/error.hpp"
#include "offload/executor.hpp"
#include "offload/future.hpp"
#include "offload/shared_future.hpp"
#include "offload/task_options.hpp"
#include "offload/task_state.hpp"
#include "offload/this_task.hpp"

namespace offload {

/// Bounds of a result_store.
struct result_store_options {
  /// How long a finished task stays findable (evicted within a tenth of it more). Accepted:
  /// 1 ms to 365 days.
  clock::duration keep_for = std::chrono::hours(1);
  /// Most tasks held, finished or not. At the bound the oldest finished go first; a submission
  /// that finds only unfinished ones is refused. Accepted: 1 to 10^8.
  std::size_t max_entries = 100'000;

  void validate() const {
    if (keep_for < std::chrono::milliseconds(1) || keep_for > std::chrono::hours(24 * 365)) {
      throw std::invalid_argument(
          "offload::result_store_options.keep_for must be in [1 ms, 365 days], got " +
          std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(keep_for).count()) +
          " ms");
    }
    if (max_entries < 1 || max_entries > 100'000'000) {
      throw std::invalid_argument(
          "offload::result_store_options.max_entries must be in [1, 10^8], got " +
          std::to_string(max_entries));
    }
  }
};

/// How a task that did not succeed ended: its exception's type name and what().
struct result_error {
  std::string type;     ///< e.g. "std::runtime_error"; "offload::cancelled" for a cancellation
  std::string message;  ///< what()
};

namespace detail {

/// One task of a result_store: shared by the store's table, its runs and the views of it.
template <class T>
struct store_entry {
  store_entry(task_id k, std::string n) : key(k), id(k.text()), name(std::move(n)) {}

  const task_id key;
  const std::string id;
  const std::string name;        // task_options::name
  std::mutex mutex;              // guards current and generation
  shared_future<T> current;      // the latest run's result
  std::uint64_t generation = 0;  // +1 per run with a result of its own (a requeue)
  std::atomic<bool> running{false};
  std::atomic<unsigned> attempts{0};
  std::atomic<double> progress{std::numeric_limits<double>::quiet_NaN()};  // NaN: none reported
};

}  // namespace detail

/// What result_store::find() saw of a task: a snapshot of its state, attempts and progress, and
/// once it is final, its value or error. The value stays valid as long as the view.
template <class T>
class result_view {
 public:
  const std::string& id() const noexcept { return m_entry->id; }

  /// The task_options::name it was submitted with (empty if none).
  const std::string& name() const noexcept { return m_entry->name; }

  /// queued, scheduled, running, retrying, or final: succeeded, failed, cancelled, expired.
  task_state state() const noexcept { return m_state; }

  /// The attempt that runs or ran last (1 for the first); 0 before the first started.
  unsigned attempts() const noexcept { return m_attempts; }

  /// The highest value the task passed to this_task::set_progress(), if it did.
  std::optional<double> progress() const noexcept { return m_progress; }

  /// The value of a task that succeeded. Throws std::logic_error naming the state otherwise.
  template <class U = T>
  requires(!std::is_void_v<U>) const U& value() const {
    if (m_state != task_state::succeeded) {
      throw std::logic_error("offload::result_view::value(): task " + id() + " is " +
                             std::string(to_string(m_state)) + ", not succeeded");
    }
    return m_result.get();
  }

  /// How a task that failed, was cancelled or expired ended; nothing otherwise.
  std::optional<result_error> error() const {
    if (m_state != task_state::failed && m_state != task_state::cancelled &&
        m_state != task_state::expired) {
      return std::nullopt;
    }
    try {
      m_result.get();
    } catch (...) {
      const std::exception_ptr e = std::current_exception();
      return result_error{detail::exception_type_name(e), detail::exception_text(e)};
    }
    return std::nullopt;
  }

 private:
  template <class U>
  friend class result_store;

  std::shared_ptr<const detail::store_entry<T>> m_entry;  // its id and name, which never change
  task_state m_state = task_state::queued;
  unsigned m_attempts = 0;
  std::optional<double> m_progress;
  shared_future<T> m_result;
};

/// Tasks submitted with an id, findable by it while they run and for `keep_for` after they end
/// (Celery's `AsyncResult(id)` for in-process work: the status endpoint of a 202 API).
///
/// submit() returns a random UUID; find(id) returns a snapshot (result_view) without waiting for
/// the task; cancel(id) cancels it as future::cancel() does. Memory is bounded: finished tasks are
/// evicted `keep_for` after they end, and at `max_entries` the oldest finished go first; a
/// submission that finds only unfinished tasks is refused with offload::rejected. A task that is
/// dead-lettered and requeued (executor::requeue) keeps its id: find() shows the new run.
/// Thread-safe. The store must not outlive its executor; tasks still running when the store is
/// destroyed finish normally.
template <class T>
class result_store {
  static_assert(std::is_void_v<T> || std::is_copy_constructible_v<T>,
                "offload::result_store<T>: T must be copyable (a requeued run hands its result "
                "to the store and to the executor)");
  using entry = detail::store_entry<T>;

 public:
  /// Throws std::invalid_argument for invalid options.
  explicit result_store(executor& ex, result_store_options options = {})
      : m_executor(ex), m_core(std::make_shared<core>(options)) {
    options.validate();
  }

  result_store(const result_store&) = delete;
  result_store& operator=(const result_store&) = delete;

  /// Submits `fn(args...)` (see executor::submit) and returns its id. Throws offload::rejected
  /// when the store is full of unfinished tasks or the executor refuses the task, and
  /// std::invalid_argument for invalid options.
  template <class F, class... Args>
  std::string submit(const task_options& options, F&& fn, Args&&... args) {
    static_assert(std::is_convertible_v<detail::call_result_t<F, Args...>, T> ||
                      (std::is_void_v<T> && std::is_void_v<detail::call_result_t<F, Args...>>),
                  "offload::result_store<T>::submit: the task's result must convert to T");
    auto e = std::make_shared<entry>(detail::task_id::random(), options.name);
    m_core->admit(e);
    try {
      future<T> f = m_executor.submit(options,
                                      run_wrapper<std::decay_t<F>>{e, m_core, std::forward<F>(fn)},
                                      std::forward<Args>(args)...);
      watch(e, std::move(f), 0);
    } catch (...) {
      m_core->forget(e);
      throw;
    }
    return e->id;
  }

  template <class F, class... Args>
  requires(!std::is_same_v<std::remove_cvref_t<F>, task_options>) std::string
      submit(F&& fn, Args&&... args) {
    return submit(task_options{}, std::forward<F>(fn), std::forward<Args>(args)...);
  }

  /// The task with `id` as it is now; nothing if no task has that id (never submitted here, or
  /// evicted). Never waits for the task.
  std::optional<result_view<T>> find(const std::string& id) const {
    std::shared_ptr<entry> e = m_core->lookup(id);
    if (!e)
      return std::nullopt;
    result_view<T> v;
    v.m_entry = e;
    {
      std::lock_guard lock(e->mutex);
      v.m_result = e->current;
    }
    v.m_state = v.m_result.valid() ? v.m_result.state() : task_state::queued;
    // A run in progress shows as running even between a requeue's future and its end.
    if (!is_terminal(v.m_state) && e->running.load(std::memory_order_relaxed))
      v.m_state = task_state::running;
    v.m_attempts = e->attempts.load(std::memory_order_relaxed);
    if (const double p = e->progress.load(std::memory_order_relaxed); !std::isnan(p))
      v.m_progress = p;
    return v;
  }

  /// Cancels the task with `id` (see future::cancel()): true if that took effect, false if it
  /// already ended, or no task has that id.
  bool cancel(const std::string& id) {
    std::shared_ptr<entry> e = m_core->lookup(id);
    if (!e)
      return false;
    shared_future<T> f;
    {
      std::lock_guard lock(e->mutex);
      f = e->current;
    }
    return f.valid() && f.cancel();
  }

  /// Tasks held now, finished or not.
  std::size_t size() const { return m_core->size(); }

 private:
  /// The table and the record of finished tasks, shared with the continuations that note ends.
  struct core {
    explicit core(result_store_options o) : options(o) {}

    struct finished_note {
      clock::time_point at{};
      std::weak_ptr<entry> of;
      std::uint64_t generation = 0;
    };

    const result_store_options options;
    mutable std::mutex mutex;  // guards entries and finished
    std::unordered_map<detail::task_id, std::shared_ptr<entry>, detail::task_id_hash> entries;
    clock::time_point next_find_sweep{};  // when lookup() next evicts expired entries
    std::deque<finished_note> finished;   // about in the order runs ended; may name evicted entries
    /// Ends noted by workers without the mutex (no worker waits for a submitter or a reader);
    /// moved to `finished` by whoever takes the mutex next.
    moodycamel::ConcurrentQueue<finished_note> ended_notes;

    void admit(const std::shared_ptr<entry>& e) {
      std::lock_guard lock(mutex);
      evict_expired(clock::now());
      while (entries.size() >= options.max_entries) {
        if (!evict_oldest_finished()) {
          throw rejected("offload: result_store is full: " + std::to_string(entries.size()) +
                         " tasks, none finished (max_entries " +
                         std::to_string(options.max_entries) + ")");
        }
      }
      entries.emplace(e->key, e);
    }
    /// Puts an evicted entry back (a requeued run of it), even past max_entries by one.
    void reinstate(const std::shared_ptr<entry>& e) {
      std::lock_guard lock(mutex);
      entries.emplace(e->key, e);  // no-op if it is there
    }
    void forget(const std::shared_ptr<entry>& e) {
      std::lock_guard lock(mutex);
      erase(e);
    }
    std::shared_ptr<entry> lookup(std::string_view id) {
      const std::optional<detail::task_id> key = detail::task_id::parse(id);
      if (!key)
        return nullptr;  // not an id this store gives
      std::lock_guard lock(mutex);
      // Past keep_for an entry is gone within a tenth of keep_for more; the sweep runs at
      // most that often here (every submission sweeps: memory stays bounded).
      if (const clock::time_point now = clock::now(); now >= next_find_sweep) {
        evict_expired(now);
        next_find_sweep = now + options.keep_for / 10;
      }
      const auto it = entries.find(*key);
      return it == entries.end() ? nullptr : it->second;
    }
    std::size_t size() const {
      std::lock_guard lock(mutex);
      return entries.size();
    }
    void ended(std::weak_ptr<entry> of, std::uint64_t generation) noexcept {
      try {
        ended_notes.enqueue({clock::now(), std::move(of), generation});
      } catch (...) {  // out of memory: the entry stays until max_entries needs its room
      }
    }

    /// Moves the notes of ended runs into `finished`; mutex held.
    void collect_ended() {
      finished_note n;
      while (ended_notes.try_dequeue(n)) finished.push_back(std::move(n));
    }

    /// Removes `e` from the table if it is there; mutex held.
    void erase(const std::shared_ptr<entry>& e) {
      const auto it = entries.find(e->key);
      if (it != entries.end() && it->second == e)
        entries.erase(it);
    }

    /// Evicts the note's entry if the note still stands for its latest run, which ended; mutex
    /// held. False if it did not.
    bool evict(const finished_note& n) {
      const std::shared_ptr<entry> e = n.of.lock();
      if (!e)
        return false;
      {
        std::lock_guard lock(e->mutex);
        if (e->generation != n.generation || !e->current.valid() || !e->current.is_ready())
          return false;  // run again since (a requeue): a later note stands for it
      }
      const std::size_t before = entries.size();
      erase(e);
      return entries.size() != before;
    }
    void evict_expired(clock::time_point now) {
      collect_ended();
      while (!finished.empty() && finished.front().at + options.keep_for <= now) {
        evict(finished.front());
        finished.pop_front();
      }
    }
    bool evict_oldest_finished() {
      collect_ended();
      while (!finished.empty()) {
        const bool evicted = evict(finished.front());
        finished.pop_front();
        if (evicted)
          return true;
      }
      return false;
    }
  };

  /// Notes, on the thread that resolves a run's future, that the run ended.
  struct end_watch final : detail::continuation {
    end_watch(std::weak_ptr<core> c, std::weak_ptr<entry> e, std::uint64_t g)
        : store(std::move(c)), of(std::move(e)), generation(g) {}
    void fire() noexcept override {
      if (std::shared_ptr<core> c = store.lock())
        c->ended(std::move(of), generation);
    }
    bool runs_user_code() const noexcept override { return false; }
    std::weak_ptr<core> store;
    std::weak_ptr<entry> of;
    std::uint64_t generation;
  };

  /// Makes `f` the entry's current run and notes its end when it comes.
  void watch(const std::shared_ptr<entry>& e, future<T> f, std::uint64_t generation) {
    detail::shared_state<T>* state = future_access::state(f);
    auto* w = new end_watch(m_core, e, generation);
    const shared_future<T> run = f.share();  // holds the state across attach()
    {
      std::lock_guard lock(e->mutex);
      if (e->generation == generation)  // else a requeued run (a later one) took its place
        e->current = run;
    }
    state->attach(w);  // fires at once if the run already ended
  }

  /// The task as the executor runs it: keeps the entry's attempt, running flag and progress, and,
  /// run again from a dead letter (no future of its own), gives the entry a new result.
  template <class F>
  struct run_wrapper {
    std::shared_ptr<entry> e;
    std::weak_ptr<core> store;
    F fn;

    template <class... Args>
    T operator()(Args&&... args) {
      e->attempts.store(this_task::attempt(), std::memory_order_relaxed);
      detail::task_context context = detail::tl_task_context;
      if (context.state != nullptr)
        return run(context, std::forward<Args>(args)...);
      // A requeued dead letter: posted, without a future. Its result goes to a state of its
      // own, claimed as running (so cancel(id) asks it to stop, as for a running task), which
      // the entry shows from now on; the entry is put back if it was evicted meanwhile.
      detail::state_ref<T> mine(detail::shared_state<T>::create(nullptr));
      future<T> f = detail::make_future(detail::state_ref<T>(mine.get()));  // the second ref
      (void)mine->try_start();  // new: nobody else can claim it first
      const shared_future<T> shown = f.share();
      auto* w = new end_watch(store, e, 0);
      {
        std::lock_guard lock(e->mutex);
        w->generation = ++e->generation;
        e->current = shown;
      }
      e->progress.store(std::numeric_limits<double>::quiet_NaN(), std::memory_order_relaxed);
      if (const std::shared_ptr<core> c = store.lock())
        c->reinstate(e);
      mine->attach(w);
      context.state = mine.get();  // this_task::stop_requested() sees cancel(id)
      const task_outcome outcome = detail::store_result(*mine.get(), [&]() -> T {
        return run(context, std::forward<Args>(args)...);
      });
      mine->publish();
      if (outcome == task_outcome::failed)
        std::rethrow_exception(mine->exception());  // counted, dead-lettered again
      // Posted: the executor drops what is returned. A run that honoured cancel(id) ends
      // normally where it can, so that no retry runs it again.
      if constexpr (!std::is_void_v<T>) {
        if (outcome == task_outcome::succeeded)
          return mine->peek();
        if constexpr (std::is_default_constructible_v<T>)
          return T{};
        else
          throw offload::cancelled("offload: requeued task cancelled");
      }
    }

    template <class... Args>
    T run(detail::task_context context, Args&&... args) {
      context.progress = &e->progress;
      context.store_id = &e->id;
      const detail::task_context_scope scope(context);
      struct running_flag {
        std::atomic<bool>& flag;
        explicit running_flag(std::atomic<bool>& f) : flag(f) {
          flag.store(true, std::memory_order_relaxed);
        }
        ~running_flag() { flag.store(false, std::memory_order_relaxed); }
      } flag(e->running);
      return static_cast<T>(fn(std::forward<Args>(args)...));
    }
  };

  executor& m_executor;
  std::shared_ptr<core> m_core;
};

}  // namespace offload
