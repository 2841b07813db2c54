#pragma once

/// @file range_split.hpp
/// @brief Lazy halving of an index range over the workers that take its pieces, as oneTBB's
/// auto_partitioner does it: no grain size to choose.

#include <bit>
#include <cstddef>

#include "offload/this_task.hpp"

namespace offload::detail {

/// A piece of an index range and how many more times it may be halved.
///
/// A range starts with enough halvings for about four pieces per worker. A piece that runs on
/// another thread than the one that split it off was stolen, which means some worker had nothing
/// else to do, so it gets k_stolen_halvings more: the range splits finer only where load is
/// uneven, and a loop of tiny bodies stays a few dozen tasks.
struct range_piece {
  std::size_t first = 0;
  std::size_t last = 0;
  unsigned halvings = 0;
  const void* split_by = nullptr;  ///< this_thread_tag() of the thread that split it off

  static constexpr unsigned k_stolen_halvings = 2;

  /// The whole range [0, size) for `workers` workers, split off by the calling thread.
  static range_piece whole(std::size_t size, unsigned workers) noexcept {
    const unsigned log2_workers = std::bit_width(workers > 1 ? workers - 1 : 1u);
    return range_piece{0, size, log2_workers + 2, this_thread_tag()};
  }

  /// The calling thread's identity: the address of one of its thread-locals.
  static const void* this_thread_tag() noexcept { return &tl_task_context; }

  /// Splits this piece (on the thread about to run it) by halving from the right, passing each
  /// right half to `spawn(range_piece)`, until it may not be halved further; what is left is
  /// this thread's to run.
  template <class Spawn>
  void split(Spawn&& spawn) {
    const void* self = this_thread_tag();
    if (split_by != self)
      halvings += k_stolen_halvings;
    while (last - first > 1 && halvings > 0) {
      const std::size_t mid = first + (last - first) / 2;
      --halvings;
      spawn(range_piece{mid, last, halvings, self});
      last = mid;
    }
  }
};

}  // namespace offload::detail
