#pragma once

/// @file block_pool.hpp
/// @brief Per-thread pools of fixed-size blocks, so that the submit → run → complete path makes
/// no heap allocation for small tasks and small future states.

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

#include "offload/detail/atomic.hpp"

namespace offload::detail {

/// Size of one block: a task node (header + inline callable) or a small future shared state.
inline constexpr std::size_t k_block_size = 128;
/// Most blocks a pool keeps on its local free list; beyond that, half of them go to a shared
/// depot, where any pool that runs dry takes them from.
inline constexpr std::size_t k_block_cache_limit = 4096;
/// Blocks are carved from chunks of this many (8 KiB), one heap allocation each: a block costs
/// exactly k_block_size bytes (an aligned allocation per block cost about 230 with glibc).
/// Chunks are never freed: pools keep blocks at their peak use, for reuse.

/// A pool of k_block_size blocks owned by one thread.
///
/// Roles: the **owner** thread allocates and frees on m_local (no atomics). Any other thread frees
/// by pushing onto m_remote (a Treiber push, CAS); the owner takes the whole remote list at once
/// with exchange(nullptr). Only pushes compete on m_remote and the owner never pops single nodes
/// from it, so there is no ABA problem.
/// Guarantee: a remote free happens-before the owner's reuse of that block ([R1] → [R2]).
/// Pools are never destroyed: a thread that exits hands its pool to the next thread that needs
/// one (blocks still in flight may be freed into it at any time).
class block_pool {
  struct free_block {
    free_block* next;
  };

  static constexpr std::size_t k_blocks_per_chunk = 64;

 public:
  /// The calling thread's pool. Thread-safe (each thread gets its own).
  static block_pool& local() {
    if (block_pool* p = tl_pool) [[likely]]
      return *p;
    return local_slow();
  }

  /// Returns an uninitialised block of k_block_size bytes, aligned to k_cache_line. Owner only.
  void* allocate() {
    if (m_local == nullptr) {
      // [R2] acquire; pairs with [R1]: the remote thread's last use of each block happens-before.
      m_local = m_remote.exchange(nullptr, std::memory_order_acquire);
      m_local_count = 0;  // unknown length; only used to bound the cache, recounted as we free
      if (m_local == nullptr)
        return allocate_slow();
    }
    free_block* b = m_local;
    m_local = b->next;
    if (m_local_count > 0)
      --m_local_count;
    return b;
  }

  /// Returns a block to the pool that allocated it. Any thread. Thread-safe.
  static void deallocate(block_pool* home, void* p) noexcept {
    auto* b = static_cast<free_block*>(p);
    if (home == tl_pool) {  // null once the thread's pool was handed back: a remote free
      if (home->m_local_count >= k_block_cache_limit)
        home->spill();
      b->next = home->m_local;
      home->m_local = b;
      ++home->m_local_count;
      return;
    }
    free_block* head = home->m_remote.load(std::memory_order_relaxed);
    do {
      b->next = head;
      // [R1] release; pairs with [R2] in allocate(): our use of the block is done before reuse.
    } while (!home->m_remote.compare_exchange_weak(
        head, b, std::memory_order_release, std::memory_order_relaxed));
  }

 private:
  block_pool() = default;

  /// The calling thread's pool, once local() created it; null again after the thread handed it
  /// back (its holder destroyed), so late frees of the thread go the remote way. A plain pointer:
  /// reading it needs no guard of thread_local initialisation.
  static inline thread_local block_pool* tl_pool = nullptr;
  /// Set when the thread's holder handed its pool back (thread exit).
  static inline thread_local bool tl_pool_released = false;

  [[gnu::noinline]] static block_pool& local_slow() {
    if (tl_pool_released) {
      // A destructor run at thread exit, after the holder's, allocates: a pool of its own,
      // never handed back (pools are never freed anyway).
      tl_pool = new block_pool;
      return *tl_pool;
    }
    thread_local holder h;
    tl_pool = h.pool;
    return *h.pool;
  }

  /// Spare blocks shared by all pools, in batches. Never destroyed (blocks outlive statics).
  struct depot {
    std::mutex mutex;
    std::vector<std::pair<free_block*, std::size_t>> batches;  // list head, length
  };
  static depot& spares() {
    static depot* d = new depot;
    return *d;
  }

  /// Local and remote lists are empty: a batch from the depot, else the next block of the
  /// current chunk, else a new chunk. Owner only.
  [[gnu::noinline]] void* allocate_slow() {
    if (m_carve == m_carve_end) {
      {
        depot& d = spares();
        std::lock_guard lock(d.mutex);
        if (!d.batches.empty()) {
          m_local = d.batches.back().first;
          m_local_count = d.batches.back().second;
          d.batches.pop_back();
        }
      }
      if (m_local != nullptr) {
        free_block* b = m_local;
        m_local = b->next;
        --m_local_count;
        return b;
      }
      constexpr std::size_t bytes = k_block_size * k_blocks_per_chunk;
      m_carve = static_cast<char*>(::operator new (bytes, std::align_val_t{k_cache_line}));
      m_carve_end = m_carve + bytes;
    }
    void* b = m_carve;
    m_carve += k_block_size;
    return b;
  }

  /// The local list is full: its first half goes to the depot. Owner only.
  void spill() noexcept {
    const std::size_t n = m_local_count / 2;
    free_block* first = m_local;
    free_block* last = first;
    for (std::size_t i = 1; i < n; ++i) last = last->next;
    m_local = last->next;
    last->next = nullptr;
    m_local_count -= n;
    depot& d = spares();
    try {
      std::lock_guard lock(d.mutex);
      d.batches.emplace_back(first, n);
    } catch (...) {  // no memory for the depot's vector: keep the blocks here
      last->next = m_local;
      m_local = first;
      m_local_count += n;
    }
  }

  struct registry {
    std::mutex mutex;
    std::vector<block_pool*> orphans;  // pools of exited threads, ready for reuse
  };
  static registry& orphans() {
    static registry* r = new registry;  // never destroyed: pools outlive static destruction
    return *r;
  }

  struct holder {
    holder() {
      registry& r = orphans();
      std::lock_guard lock(r.mutex);
      if (!r.orphans.empty()) {
        pool = r.orphans.back();
        r.orphans.pop_back();
      } else {
        pool = new block_pool;
      }
    }
    ~holder() {
      tl_pool = nullptr;
      tl_pool_released = true;
      registry& r = orphans();
      std::lock_guard lock(r.mutex);
      r.orphans.push_back(pool);
    }
    block_pool* pool;
  };

  free_block* m_local = nullptr;  // owner only
  std::size_t m_local_count = 0;  // owner only: blocks known to be on m_local
  char* m_carve = nullptr;        // owner only: next uncarved block of the current chunk
  char* m_carve_end = nullptr;    // owner only: end of the current chunk
  // m_remote: pushed by any thread (CAS), emptied by the owner (exchange).
  alignas(k_cache_line) std::atomic<free_block*> m_remote{nullptr};
};

/// A block together with the pool it must return to.
struct pooled_block {
  void* memory;
  block_pool* home;
};

/// Allocates a block from the calling thread's pool.
inline pooled_block allocate_block() {
  block_pool& pool = block_pool::local();
  return {pool.allocate(), &pool};
}

}  // namespace offload::detail
