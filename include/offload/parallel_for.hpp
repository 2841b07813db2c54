#pragma once

/// @file parallel_for.hpp
/// @brief offload::parallel_for: a loop over an index range or a random-access range, run by an
/// executor's workers (oneTBB's parallel_for, Taskflow's for_each_index).

#include <atomic>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <memory>
#include <ranges>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

#include "offload/detail/range_split.hpp"
#include "offload/error.hpp"
#include "offload/executor.hpp"
#include "offload/task_group.hpp"
#include "offload/task_options.hpp"
#include "offload/this_task.hpp"

namespace offload {
namespace detail {

/// One parallel_for call: what its pieces share. Lives on the caller's stack, which waits.
///
/// A caller that is not one of the executor's workers cannot run the group's tasks while it
/// waits, so the halves it splits off are reclaimable: each one's task runs it only if it claims
/// it first, and the caller, done with its own piece, claims the ones no worker has started
/// (smallest first, while the workers take the largest from the queue's front). The caller
/// computes as a oneTBB arena's thread does instead of only waiting for woken workers.
template <class Body>
struct loop {
  /// A half the external caller split off: run by whoever claims it first.
  struct reclaimable {
    range_piece piece;
    std::atomic<bool> claimed{false};
    /// relaxed: an RMW picks the one runner; the piece was written before the task that reads
    /// it was queued (or by the claiming caller itself).
    bool claim() noexcept { return !claimed.exchange(true, std::memory_order_relaxed); }
  };

  Body& body;  // called with an index in [0, size)
  task_group& group;
  const task_options* options;  // lane and name of the pieces; null: the caller's lane
  task_context caller;          // the calling task's stop state
  const void* external_caller;  // the caller's this_thread_tag() if not a worker of the group's
  std::vector<std::unique_ptr<reclaimable>> reclaimables{};  // the external caller's only

  static constexpr std::size_t k_check_every = 256;  // indices between looks at cancellation

  bool stopping() const noexcept { return group.is_cancelled() || caller.stop_requested(); }

  void run(range_piece piece) {
    piece.split([this](range_piece right) {
      spawn(right);
    });
    for (std::size_t i = piece.first; i < piece.last;) {
      if (stopping()) {
        group.cancel();
        return;
      }
      const std::size_t end = piece.last - i > k_check_every ? i + k_check_every : piece.last;
      try {
        for (; i < end; ++i) body(i);
      } catch (...) {
        group.cancel();  // the others stop starting pieces; wait() rethrows the first exception
        throw;
      }
    }
  }

  void spawn(range_piece piece) {
    if (external_caller != nullptr && range_piece::this_thread_tag() == external_caller) {
      reclaimables.push_back(std::make_unique<reclaimable>());
      reclaimable* r = reclaimables.back().get();
      r->piece = piece;
      submit([this, r] {
        if (r->claim())
          run(r->piece);
      });
      return;
    }
    submit([this, piece] {
      run(piece);
    });
  }

  /// The external caller runs the halves it split off that no worker started, newest first.
  void reclaim() {
    for (std::size_t i = reclaimables.size(); i > 0;) {
      reclaimable& r = *reclaimables[--i];
      if (r.claim()) {
        run(r.piece);             // may split off more, appended to the list
        i = reclaimables.size();  // the newest again
      }
    }
  }

  template <class Task>
  void submit(Task&& task) {
    if (options != nullptr)
      group.run(*options, std::forward<Task>(task));
    else
      group.run(std::forward<Task>(task));
  }
};

template <class Body>
void run_loop(executor& ex, const task_options* options, std::size_t size, Body& body) {
  if (size == 0)
    return;
  task_group group(ex);
  const bool on_worker = tl_current_scheduler != nullptr && this_task::executor() == &ex;
  loop<Body> l{
      body, group, options, tl_task_context, on_worker ? nullptr : range_piece::this_thread_tag()};
  // The caller runs the first piece (the workers wake and take the halves it splits off), then
  // waits: on one of ex's workers that wait runs the group's queued pieces; elsewhere the caller
  // first runs the halves no worker took.
  try {
    l.run(range_piece::whole(size, ex.worker_count()));
    if (!on_worker)
      l.reclaim();
  } catch (...) {
    group.cancel();
    try {
      group.wait();
    } catch (...) {  // the caller's own exception came first
    }
    throw;
  }
  group.wait();
}

/// Validates a loop's options: a loop waits for calls, not for attempts.
inline void check_loop_options(const task_options& options) {
  options.validate();
  if (options.needs_policy()) {
    throw std::invalid_argument(
        "offload::parallel_for: task_options.retry, delay, deadline, key and rate are not "
        "supported for a loop");
  }
}

/// Runs fn(first + i) for i in [0, last - first), computed without overflow for any integers,
/// the two ends compared by value (mixed signedness included); fn gets the common type.
template <class First, class Last, class F>
void run_index_loop(executor& ex, const task_options* options, First first, Last last, F& fn) {
  using index = std::common_type_t<First, Last>;
  if (std::cmp_less_equal(last, first))
    return;
  // Both ends are representable in the wider of intmax_t / uintmax_t as a signed or unsigned
  // value; the count is last - first, computed in uintmax_t (modular, exact for any pair).
  const auto as_wide = [](auto v) {
    return static_cast<std::uintmax_t>(static_cast<std::intmax_t>(v));
  };
  const std::uintmax_t lo =
      std::is_signed_v<First> ? as_wide(first) : static_cast<std::uintmax_t>(first);
  const std::uintmax_t hi =
      std::is_signed_v<Last> ? as_wide(last) : static_cast<std::uintmax_t>(last);
  const std::uintmax_t count = hi - lo;
  if (count > std::numeric_limits<std::size_t>::max() || !std::in_range<index>(first) ||
      !std::in_range<index>(last)) {
    throw std::invalid_argument(
        "offload::parallel_for: the range does not fit the index type of its two ends");
  }
  auto body = [&fn, lo](std::size_t i) {
    fn(static_cast<index>(static_cast<std::intmax_t>(lo + static_cast<std::uintmax_t>(i))));
  };
  run_loop(ex, options, static_cast<std::size_t>(count), body);
}

/// Runs fn(range[i]) for every element of a sized random-access range.
template <class R, class F>
void run_range_loop(executor& ex, const task_options* options, R& range, F& fn) {
  auto begin = std::ranges::begin(range);
  auto body = [&fn, begin](std::size_t i) {
    fn(begin[static_cast<std::ranges::range_difference_t<R>>(i)]);
  };
  run_loop(ex, options, static_cast<std::size_t>(std::ranges::size(range)), body);
}

}  // namespace detail

/// Calls `fn(i)` for every integer i in [first, last) on `ex`'s workers and returns when all
/// calls returned (a loop with last <= first does nothing). Work stealing decides how the range
/// is split (oneTBB's auto_partitioner: halves split off only while workers take them), so there
/// is no grain size to choose and tiny bodies stay cheap. Called from one of `ex`'s tasks, the
/// caller runs part of the range and waits without blocking its worker (it never deadlocks, even
/// on one worker); from elsewhere it blocks until the workers are done.
///
/// If a call throws, no further piece starts, and the first exception is rethrown once the
/// running ones returned. If the calling task is cancelled (this_task::stop_requested()), no
/// further piece starts and offload::cancelled is thrown. Calls run concurrently: `fn` must be
/// safe to call from several threads at once. Throws offload::rejected if `ex` no longer accepts
/// work.
template <std::integral First, std::integral Last, class F>
void parallel_for(executor& ex, First first, Last last, F&& fn) {
  detail::run_index_loop(ex, nullptr, first, last, fn);
}

/// As parallel_for(ex, first, last, fn), its pieces in `options.lane` under `options.name`.
/// Throws std::invalid_argument for options a loop does not take (retry, delay, deadline, key,
/// rate).
template <std::integral First, std::integral Last, class F>
void parallel_for(executor& ex, const task_options& options, First first, Last last, F&& fn) {
  detail::check_loop_options(options);
  detail::run_index_loop(ex, &options, first, last, fn);
}

/// Calls `fn(element)` for every element of a random-access range (a std::vector, an array, a
/// span...), as parallel_for(ex, 0, size, ...) does for indices.
template <std::ranges::random_access_range R, class F>
requires std::ranges::sized_range<R>
void parallel_for(executor& ex, R&& range, F&& fn) {
  detail::run_range_loop(ex, nullptr, range, fn);
}

/// As parallel_for(ex, range, fn), its pieces in `options.lane` under `options.name`.
template <std::ranges::random_access_range R, class F>
requires std::ranges::sized_range<R>
void parallel_for(executor& ex, const task_options& options, R&& range, F&& fn) {
  detail::check_loop_options(options);
  detail::run_range_loop(ex, &options, range, fn);
}

}  // namespace offload
