#pragma once

/// @file task_node.hpp
/// @brief The type-erased, move-free task node that queues carry by pointer.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>

#if defined(__GNUG__)
#include <cxxabi.h>
#endif

#include "offload/detail/block_pool.hpp"
#include "offload/detail/shared_text.hpp"
#include "offload/lane.hpp"
#include "offload/task_events.hpp"

namespace offload::detail {

struct task_node;

/// Why a task is being dropped instead of run.
enum class discard_reason {
  rejected,  ///< refused at submission (the submitter gets offload::rejected)
  shutdown,  ///< queued when shutdown(shutdown_mode::cancel) ran
};

/// How one run of a task node ended: a final task_outcome (same values), or an attempt of a
/// policy task that did not end the task (counted as not final by the pool's runner).
enum class attempt_end : std::uint8_t {
  succeeded = static_cast<std::uint8_t>(task_outcome::succeeded),
  failed = static_cast<std::uint8_t>(task_outcome::failed),
  cancelled = static_cast<std::uint8_t>(task_outcome::cancelled),
  expired = static_cast<std::uint8_t>(task_outcome::expired),
  retried,   ///< a retry was scheduled: the task goes on
  deferred,  ///< the start waits for a rate-limit token: not an attempt
};
static_assert(static_cast<std::size_t>(attempt_end::retried) == k_outcome_count);

/// True if the run ended the task, with the outcome `final_outcome()` gives.
constexpr bool is_final(attempt_end e) noexcept {
  return e != attempt_end::retried && e != attempt_end::deferred;
}
/// The outcome of a final run (is_final(e)).
constexpr task_outcome final_outcome(attempt_end e) noexcept {
  return static_cast<task_outcome>(e);
}

/// Per-callable-type operations, one static table per type.
struct task_ops {
  /// Runs the callable, then destroys it (even if it throws; the exception propagates).
  /// Returns how it ended: callables that resolve a future report failed or cancelled
  /// themselves; for others, returning means succeeded and throwing means failed.
  attempt_end (*run)(task_node*);
  /// Destroys the callable without running it, resolving any future with the reason.
  void (*discard)(task_node*, discard_reason) noexcept;
  /// Tells the task it left a timer and is queued again (for future::state()); may be null.
  void (*became_ready)(task_node*) noexcept;
};

/// A task: a header and the callable, placed in one pooled block of k_block_size bytes. Never
/// moved once built, so the callable needs neither to be movable nor nothrow-movable after
/// construction. The header is 24 bytes, so that a callable of up to 40 bytes (a fork-join child
/// capturing a few references) keeps the whole task in one cache line. The fields most tasks
/// lack, a name and an enqueue time (timed tasks only), live in the block's last 16 bytes and
/// are read only when their flag is set.
struct task_node {
  const task_ops* ops;
  block_pool* home;  // the pool the block returns to
  offload::lane lane = offload::lane::normal;
  bool holds_lane_slot = false;  // counted against its lane's capacity until a worker takes it
  bool has_name = false;
  bool timed = false;  // chosen for the wait and run time histograms

  /// The name (the executor's record of it); null for unnamed tasks. Valid while the node holds
  /// it: until it is run or discarded, or take_name().
  const std::string* name() const noexcept { return has_name ? &tail().name->text : nullptr; }
  /// Gives the node a name (it holds the reference until it is freed, or take_name()).
  void set_name(text_ref name) noexcept {
    has_name = static_cast<bool>(name);
    if (has_name)
      tail().name = name.release();
  }
  /// A new reference to the name (none for unnamed tasks), valid after the node is freed.
  text_ref share_name() const noexcept {
    return has_name ? text_ref::share(tail().name) : text_ref{};
  }
  /// Takes the name's reference out of the node (for whoever needs it once the node is freed).
  text_ref take_name() noexcept {
    if (!has_name)
      return {};
    has_name = false;
    return text_ref::adopt(tail().name);
  }
  /// Drops the name's reference, if any: the node is being freed.
  void drop_name() noexcept {
    if (has_name) {
      has_name = false;
      tail().name->release();
    }
  }
  /// The tick_clock time it became ready, for the queue wait histogram; 0: not timed.
  std::uint64_t enqueued_ns() const noexcept { return timed ? tail().enqueued_ns : 0; }
  void set_enqueued_ns(std::uint64_t ns) noexcept {
    timed = ns != 0;
    if (timed)
      tail().enqueued_ns = ns;
  }

  struct tail_fields {
    shared_text* name;
    std::uint64_t enqueued_ns;
  };

 private:
  tail_fields& tail() const noexcept {
    return *reinterpret_cast<tail_fields*>(reinterpret_cast<std::uintptr_t>(this) + k_block_size -
                                           sizeof(tail_fields));
  }
};
static_assert(sizeof(task_node) == 24, "the task header fits in 24 bytes");

/// The exception's what(), or "unknown exception".
inline std::string exception_text(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "unknown exception";
  }
}

/// The exception's dynamic type name, demangled where the ABI allows (e.g. "std::runtime_error").
inline std::string exception_type_name(const std::exception_ptr& e) {
  const char* mangled = "unknown";
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    mangled = typeid(x).name();
  } catch (...) {
    return "unknown";
  }
#if defined(__GNUG__)
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> readable(
      abi::__cxa_demangle(mangled, nullptr, nullptr, &status), std::free);
  if (status == 0 && readable)
    return readable.get();
#endif
  return mangled;
}

/// The failure of the last task that failed on this thread while resolving a future or a task
/// group, described before the failure was published: once published, the waiting thread may
/// destroy the exception object, so the executor (hooks, dead letters) reads this note rather
/// than the exception. Failure path only.
struct failure_note {
  std::exception_ptr error;
  std::string text;  ///< exception_text(error)
  std::string type;  ///< exception_type_name(error)
};
inline thread_local failure_note tl_failure;

/// Whether the note keeps the exception itself (set per worker thread: only failure hooks need
/// it). Without it, the worker holds no reference that could outlive the waiter's, so the
/// exception object is never destroyed on the worker after the waiter read it.
inline thread_local bool tl_keep_failure_error = true;

/// Set by a policy task that recorded its own dead letter, so the pool does not add one.
inline thread_local bool tl_dead_letter_recorded = false;

/// Records `e` in tl_failure (text and type taken now). Never throws.
inline void note_failure(std::exception_ptr e) noexcept {
  try {
    tl_failure.text = exception_text(e);
    tl_failure.type = exception_type_name(e);
  } catch (...) {  // out of memory: the note keeps the exception without its text
    tl_failure.text.clear();
    tl_failure.type.clear();
  }
  tl_failure.error = tl_keep_failure_error ? std::move(e) : std::exception_ptr();
}

/// Offset of a callable F inside the block: right after the header, rounded up to F's alignment
/// (a boxed F stores a pointer there).
template <class F>
inline constexpr std::size_t k_task_storage_offset = (sizeof(task_node) + alignof(F) - 1) /
                                                     alignof(F) * alignof(F);

/// Where a callable F lives: after the header, before the tail fields, within the same block.
template <class F>
inline void* task_storage(task_node* n) noexcept {
  return reinterpret_cast<std::byte*>(n) + k_task_storage_offset<F>;
}

/// Bytes a callable F has inline in a task node: from its storage offset to the tail fields.
template <class F>
inline constexpr std::size_t k_task_inline_capacity = k_block_size - k_task_storage_offset<F> -
                                                      sizeof(task_node::tail_fields);

/// Bytes any callable (aligned up to max_align_t) has inline in a task node: 128 − 32 (header
/// rounded up to 16) − 16 (tail fields) = 80; callables aligned to 8 or less get 88. Callables that
/// fit (and are not over-aligned) are stored inline: a task costs no heap allocation. Larger ones
/// are boxed.
inline constexpr std::size_t k_task_inline_size = k_task_inline_capacity<std::max_align_t>;
static_assert(k_task_inline_size >= 48, "the small-buffer claim: at least 48 bytes inline");

template <class F>
inline constexpr bool k_fits_inline = alignof(F) <= alignof(std::max_align_t) &&
                                      sizeof(F) <= k_task_inline_capacity<F>;

/// Adapts a callable F to the task protocol. F must provide `void operator()()` (or
/// `task_outcome operator()()` or `attempt_end operator()()`, reporting how it ended) and may
/// provide `void discard(discard_reason) noexcept` to resolve a future when dropped.
template <class F>
struct task_model {
  static F* get(task_node* n) noexcept {
    if constexpr (k_fits_inline<F>) {
      return std::launder(static_cast<F*>(task_storage<F>(n)));
    } else {
      return *std::launder(static_cast<F**>(task_storage<F*>(n)));
    }
  }
  static void destroy(task_node* n) noexcept {
    if constexpr (k_fits_inline<F>) {
      get(n)->~F();
    } else {
      delete get(n);
    }
  }
  static attempt_end run(task_node* n) {
    struct guard {
      task_node* n;
      ~guard() { destroy(n); }
    } g{n};
    using result = decltype((*get(n))());
    if constexpr (std::is_same_v<result, attempt_end>) {
      return (*get(n))();
    } else if constexpr (std::is_same_v<result, task_outcome>) {
      return static_cast<attempt_end>((*get(n))());
    } else {
      (*get(n))();
      return attempt_end::succeeded;
    }
  }
  static void discard(task_node* n, discard_reason why) noexcept {
    if constexpr (requires(F & f) { f.discard(why); })
      get(n)->discard(why);
    destroy(n);
  }
  static void became_ready(task_node* n) noexcept {
    if constexpr (requires(F & f) { f.became_ready(); })
      get(n)->became_ready();
  }
  static constexpr task_ops ops{&run, &discard, &became_ready};
};

/// Builds a task node holding `f` in a block of the calling thread's pool.
template <class F>
task_node* make_task(F&& f) {
  using fn = std::decay_t<F>;
  pooled_block block = allocate_block();
  auto* n = ::new (block.memory) task_node;
  n->ops = &task_model<fn>::ops;
  n->home = block.home;
  try {
    if constexpr (k_fits_inline<fn>) {
      ::new (task_storage<fn>(n)) fn(std::forward<F>(f));
    } else {
      ::new (task_storage<fn*>(n)) fn*(new fn(std::forward<F>(f)));
    }
  } catch (...) {
    block_pool::deallocate(block.home, block.memory);
    throw;
  }
  return n;
}

/// Runs a task and returns its block to its pool. Exceptions from the callable propagate after
/// the node is freed.
inline attempt_end run_task(task_node* n) {
  struct release {
    task_node* n;
    ~release() {
      n->drop_name();
      block_pool::deallocate(n->home, n);
    }
  } r{n};
  return n->ops->run(n);
}

/// Drops a task without running it and returns its block to its pool.
inline void discard_task(task_node* n, discard_reason why) noexcept {
  n->ops->discard(n, why);
  n->drop_name();
  block_pool::deallocate(n->home, n);
}

}  // namespace offload::detail
