#pragma once

/// @file topology.hpp
/// @brief Topology-aware worker placement: the CPUs each worker is pinned to, and the order in
/// which it picks victims to steal from (nearest first).
///
/// plan_placement() only computes a placement_plan; it neither creates nor pins threads. The
/// executor computes the plan once, before starting its workers, and each worker calls
/// pin_current_thread(plan.worker_cpus[i]) first thing on its own thread.
///
/// With hwloc (OFFLOAD_HAS_HWLOC) the plan follows the topology tree. Without hwloc, or when the
/// topology cannot be loaded, compact and scatter fall back to plain CPU affinity (worker i on
/// allowed CPU i mod N, steal order by index rotation) and the plan's note says so.

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include <offload/placement.hpp>

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif

#if defined(OFFLOAD_HAS_HWLOC)
#include <hwloc.h>
#endif

namespace offload::detail {

/// Where the workers run and whom they steal from. Plain data; built by plan_placement().
struct placement_plan {
  /// Size = workers. Per worker, the OS CPU numbers (hwloc PU os_index) to pin it to, in
  /// ascending order; empty = do not pin (placement::none, or nothing known about the CPUs).
  std::vector<std::vector<unsigned>> worker_cpus;
  /// Size = workers, or empty (placement::none, or no CPUs known): then keep random victims.
  /// Per worker w, every other worker index exactly once, nearest first (ties: w+1, w+2, ...
  /// wrapping, so that workers do not all start with worker 0).
  std::vector<std::vector<unsigned>> steal_order;
  /// One line on what was done or why it fell back; empty for placement::none. Meant for a log.
  std::string note;
  /// True when compact or scatter could not use the topology (no hwloc, or hwloc failed): the
  /// executor then prints the note on stderr.
  bool fell_back = false;
};

/// Steal orders for `workers` workers: per worker w, the others sorted by `distance(w, j)`
/// (smaller is nearer), ties by rotation distance (j - w) mod workers.
template <class Distance>
std::vector<std::vector<unsigned>> nearest_first_steal_orders(unsigned workers, Distance distance) {
  std::vector<std::vector<unsigned>> orders(workers);
  std::vector<std::tuple<int, unsigned, unsigned>> keyed;  // (distance, rotation, worker)
  for (unsigned w = 0; w < workers; ++w) {
    keyed.clear();
    for (unsigned j = 0; j < workers; ++j) {
      if (j != w) {
        keyed.emplace_back(distance(w, j), (j + workers - w) % workers, j);
      }
    }
    std::sort(keyed.begin(), keyed.end());
    orders[w].reserve(keyed.size());
    for (const auto& k : keyed) orders[w].push_back(std::get<2>(k));
  }
  return orders;
}

/// A plan that pins nobody and keeps random victims (steal_order empty).
inline placement_plan unpinned_plan(unsigned workers, std::string note = {}) {
  placement_plan plan;
  plan.worker_cpus.resize(workers);
  plan.note = std::move(note);
  return plan;
}

/// The CPUs the calling thread may run on (sched_getaffinity), ascending; new threads inherit
/// them. Empty if unknown (not Linux, or the call failed).
inline std::vector<unsigned> allowed_cpus() {
  std::vector<unsigned> cpus;
#if defined(__linux__)
  // The kernel's mask may be larger than cpu_set_t: grow until sched_getaffinity accepts it.
  for (std::size_t count = CPU_SETSIZE; count <= (std::size_t{1} << 22); count *= 2) {
    cpu_set_t* set = CPU_ALLOC(count);
    if (set == nullptr) {
      break;
    }
    const std::size_t size = CPU_ALLOC_SIZE(count);
    if (sched_getaffinity(0, size, set) == 0) {
      for (std::size_t cpu = 0; cpu < count; ++cpu) {
        if (CPU_ISSET_S(cpu, size, set)) {
          cpus.push_back(static_cast<unsigned>(cpu));
        }
      }
      CPU_FREE(set);
      break;
    }
    const int err = errno;
    CPU_FREE(set);
    if (err != EINVAL) {
      break;
    }
  }
#endif
  return cpus;
}

/// The fallback plan: worker i pinned to cpus[i mod cpus.size()], steal order by rotation.
/// `reason` says why there is no topology, e.g. "built without hwloc". placement::none, or no
/// CPUs, give an unpinned plan. Pure; thread-safe.
inline placement_plan plan_plain_affinity(placement p,
                                          unsigned workers,
                                          const std::vector<unsigned>& cpus,
                                          std::string_view reason) {
  if (p == placement::none) {
    return unpinned_plan(workers);
  }
  std::string head = "offload: " + std::string(reason) + ": placement " + std::string(to_string(p));
  if (cpus.empty()) {
    placement_plan plan =
        unpinned_plan(workers, head + " leaves workers unpinned (allowed CPUs unknown)");
    plan.fell_back = true;
    return plan;
  }
  placement_plan plan;
  plan.worker_cpus.resize(workers);
  for (unsigned i = 0; i < workers; ++i) {
    plan.worker_cpus[i] = {cpus[i % cpus.size()]};
  }
  plan.steal_order = nearest_first_steal_orders(workers, [](unsigned, unsigned) {
    return 0;
  });
  plan.fell_back = true;
  plan.note = head + " falls back to plain CPU affinity (worker i on allowed CPU i mod " +
              std::to_string(cpus.size()) + ")";
  return plan;
}

#if defined(OFFLOAD_HAS_HWLOC)
/// The plan for a loaded hwloc topology (the real machine or a synthetic one). One PU per worker:
/// compact walks cores in logical order taking each core's first PU, then their second PUs, ...;
/// scatter orders PUs by (SMT rank, core's rank in its parent, parent's rank in its parent, ...
/// up to the package), which is an exact round-robin over packages, L3s and cores for symmetric
/// trees. More workers than PUs: worker i shares the PU of worker i mod PUs. Steal order: nearest
/// first by the depth of the two PUs' lowest common ancestor (same PU, core, L2, L3, NUMA group,
/// package, machine). Only PUs in the topology's allowed cpuset are used. Does not modify
/// `topology`; concurrent calls on the same topology are safe.
inline placement_plan plan_placement(placement p, unsigned workers, hwloc_topology_t topology) {
  if (p == placement::none) {
    return unpinned_plan(workers);
  }
  struct pu_info {
    hwloc_obj_t pu;
    hwloc_obj_t core;  // the PU's Core, or the PU itself when the topology has no cores
    unsigned smt_rank;
    std::vector<unsigned> scatter_key;
  };
  std::vector<pu_info> pus;
  hwloc_const_cpuset_t allowed = hwloc_topology_get_allowed_cpuset(topology);
  const int pu_count = hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_PU);
  for (int i = 0; i < pu_count; ++i) {
    hwloc_obj_t pu = hwloc_get_obj_by_type(topology, HWLOC_OBJ_PU, static_cast<unsigned>(i));
    if (pu == nullptr || (allowed != nullptr && !hwloc_bitmap_isset(allowed, pu->os_index))) {
      continue;
    }
    hwloc_obj_t core = hwloc_get_ancestor_obj_by_type(topology, HWLOC_OBJ_CORE, pu);
    if (core == nullptr) {
      core = pu;
    }
    // Logical order is depth-first, so the PUs of a core are contiguous.
    const unsigned smt_rank = !pus.empty() && pus.back().core == core ? pus.back().smt_rank + 1 : 0;
    pus.push_back({pu, core, smt_rank, {}});
  }
  if (pus.empty()) {
    return plan_plain_affinity(p, workers, allowed_cpus(), "hwloc found no allowed PU");
  }

  // PU logical order is compact order within one SMT rank; stable sorts keep it for ties.
  if (p == placement::compact) {
    std::stable_sort(pus.begin(), pus.end(), [](const pu_info& a, const pu_info& b) {
      return a.smt_rank < b.smt_rank;
    });
  } else {
    for (pu_info& info : pus) {
      info.scatter_key.push_back(info.smt_rank);
      for (hwloc_obj_t obj = info.core; obj != nullptr && obj->parent != nullptr;
           obj = obj->parent) {
        info.scatter_key.push_back(obj->sibling_rank);
      }
    }
    std::stable_sort(pus.begin(), pus.end(), [](const pu_info& a, const pu_info& b) {
      return a.scatter_key < b.scatter_key;
    });
  }

  const std::size_t n = pus.size();
  placement_plan plan;
  plan.worker_cpus.resize(workers);
  std::vector<hwloc_obj_t> worker_pu(workers);
  std::vector<hwloc_obj_t> cores_used;
  for (unsigned i = 0; i < workers; ++i) {
    const pu_info& info = pus[i % n];
    worker_pu[i] = info.pu;
    plan.worker_cpus[i] = {info.pu->os_index};
    if (std::find(cores_used.begin(), cores_used.end(), info.core) == cores_used.end()) {
      cores_used.push_back(info.core);
    }
  }
  plan.steal_order = nearest_first_steal_orders(workers, [&](unsigned a, unsigned b) {
    return -hwloc_get_common_ancestor_obj(topology, worker_pu[a], worker_pu[b])->depth;
  });

  std::size_t all_cores = 0;  // each allowed core has exactly one PU of SMT rank 0
  for (const pu_info& info : pus) {
    all_cores += info.smt_rank == 0 ? 1 : 0;
  }
  const std::size_t pus_used = std::min<std::size_t>(workers, n);
  plan.note = "offload: placement " + std::string(to_string(p)) +
              " (hwloc): " + std::to_string(workers) + " workers pinned to " +
              std::to_string(pus_used) + " PUs on " + std::to_string(cores_used.size()) + " of " +
              std::to_string(all_cores) + " cores";
  if (pus_used > cores_used.size()) {
    plan.note += ", SMT siblings in use";
  }
  if (workers > n) {
    plan.note += "; more workers than allowed PUs: worker i shares the PU of worker i mod " +
                 std::to_string(n);
  }
  return plan;
}
#endif

/// The plan for this machine and process: with hwloc, the topology restricted to the process's
/// CPU binding (and the cgroup's allowed CPUs); otherwise, or if hwloc fails to load it, the
/// plain-affinity fallback over allowed_cpus(). Call before starting the workers (it takes a few
/// milliseconds with hwloc). Thread-safe.
inline placement_plan plan_placement(placement p, unsigned workers) {
  if (p == placement::none) {
    return unpinned_plan(workers);
  }
#if defined(OFFLOAD_HAS_HWLOC)
  hwloc_topology_t topology = nullptr;
  if (hwloc_topology_init(&topology) != 0) {
    return plan_plain_affinity(p, workers, allowed_cpus(), "hwloc_topology_init failed");
  }
  struct destroy_on_exit {
    hwloc_topology_t topology;
    ~destroy_on_exit() { hwloc_topology_destroy(topology); }
  } guard{topology};
  unsigned long flags = HWLOC_TOPOLOGY_FLAG_IS_THISSYSTEM;
#if HWLOC_API_VERSION >= 0x00020100
  flags |= HWLOC_TOPOLOGY_FLAG_RESTRICT_TO_CPUBINDING;  // respect taskset / sched_setaffinity
#endif
  if (hwloc_topology_set_flags(topology, flags) != 0 || hwloc_topology_load(topology) != 0) {
    const int err = errno;
    return plan_plain_affinity(
        p,
        workers,
        allowed_cpus(),
        "hwloc could not load the topology (" + std::string(std::strerror(err)) + ")");
  }
  return plan_placement(p, workers, topology);
#else
  return plan_plain_affinity(p, workers, allowed_cpus(), "built without hwloc");
#endif
}

/// Pins the calling thread to `cpus` (OS CPU numbers) with pthread_setaffinity_np. Empty `cpus`:
/// does nothing and returns true. On failure returns false and, if `error` is not null, stores a
/// one-line reason there; the thread's affinity is then unchanged. Thread-safe.
inline bool pin_current_thread(const std::vector<unsigned>& cpus, std::string* error) {
  if (cpus.empty()) {
    return true;
  }
#if defined(__linux__)
  const std::size_t count = std::size_t{*std::max_element(cpus.begin(), cpus.end())} + 1;
  cpu_set_t* set = CPU_ALLOC(count);
  if (set == nullptr) {
    if (error != nullptr) {
      *error = "offload: CPU_ALLOC failed";
    }
    return false;
  }
  const std::size_t size = CPU_ALLOC_SIZE(count);
  CPU_ZERO_S(size, set);
  for (unsigned cpu : cpus) {
    CPU_SET_S(cpu, size, set);
  }
  const int rc = pthread_setaffinity_np(pthread_self(), size, set);
  CPU_FREE(set);
  if (rc != 0) {
    if (error != nullptr) {
      std::string list;
      for (unsigned cpu : cpus) {
        if (!list.empty()) {
          list += ',';
        }
        list += std::to_string(cpu);
      }
      *error = "offload: pinning a worker to CPUs {" + list +
               "} failed: " + std::string(std::strerror(rc));
    }
    return false;
  }
  return true;
#else
  if (error != nullptr) {
    *error = "offload: pinning threads is not supported on this platform";
  }
  return false;
#endif
}

}  // namespace offload::detail
