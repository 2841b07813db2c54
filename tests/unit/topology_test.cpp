// Worker placement plans (offload/detail/topology.hpp): compact and scatter on synthetic hwloc
// topologies, nearest-first steal orders, wrap-around, the plain-affinity fallback, and pinning
// a real thread on this machine.

#include <algorithm>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <offload/detail/topology.hpp>  // first: the header compiles on its own

#if defined(__linux__)
#include <sched.h>
#endif

namespace {

using offload::placement;
using offload::detail::placement_plan;

/// True if every steal order is a permutation of the other workers.
void expect_steal_orders_are_permutations(const placement_plan& plan) {
  const auto workers = static_cast<unsigned>(plan.worker_cpus.size());
  ASSERT_EQ(plan.steal_order.size(), workers);
  for (unsigned w = 0; w < workers; ++w) {
    std::vector<unsigned> order = plan.steal_order[w];
    std::sort(order.begin(), order.end());
    std::vector<unsigned> others;
    for (unsigned j = 0; j < workers; ++j) {
      if (j != w) {
        others.push_back(j);
      }
    }
    EXPECT_EQ(order, others) << "worker " << w;
  }
}

TEST(placement, names) {
  EXPECT_EQ(offload::to_string(placement::none), "none");
  EXPECT_EQ(offload::to_string(placement::compact), "compact");
  EXPECT_EQ(offload::to_string(placement::scatter), "scatter");
}

TEST(placement, none_pins_nobody_and_keeps_random_victims) {
  const placement_plan plan = offload::detail::plan_placement(placement::none, 4);
  ASSERT_EQ(plan.worker_cpus.size(), 4U);
  for (const auto& cpus : plan.worker_cpus) EXPECT_TRUE(cpus.empty());
  EXPECT_TRUE(plan.steal_order.empty());
  EXPECT_TRUE(plan.note.empty());
}

TEST(placement, plain_affinity_fallback_wraps_over_allowed_cpus) {
  const placement_plan plan =
      offload::detail::plan_plain_affinity(placement::compact, 5, {2, 3, 7}, "built without hwloc");
  ASSERT_EQ(plan.worker_cpus.size(), 5U);
  const std::vector<std::vector<unsigned>> expected{{2}, {3}, {7}, {2}, {3}};
  EXPECT_EQ(plan.worker_cpus, expected);
  // Rotation: worker w steals from w+1, w+2, ... first.
  EXPECT_EQ(plan.steal_order[0], (std::vector<unsigned>{1, 2, 3, 4}));
  EXPECT_EQ(plan.steal_order[3], (std::vector<unsigned>{4, 0, 1, 2}));
  expect_steal_orders_are_permutations(plan);
  EXPECT_EQ(plan.note,
            "offload: built without hwloc: placement compact falls back to plain CPU affinity "
            "(worker i on allowed CPU i mod 3)");
}

TEST(placement, plain_affinity_without_cpus_leaves_workers_unpinned) {
  const placement_plan plan =
      offload::detail::plan_plain_affinity(placement::scatter, 3, {}, "built without hwloc");
  ASSERT_EQ(plan.worker_cpus.size(), 3U);
  for (const auto& cpus : plan.worker_cpus) EXPECT_TRUE(cpus.empty());
  EXPECT_TRUE(plan.steal_order.empty());
  EXPECT_NE(plan.note.find("unpinned"), std::string::npos) << plan.note;
}

TEST(placement, pinning_to_nothing_is_a_no_op) {
  std::string error;
  EXPECT_TRUE(offload::detail::pin_current_thread({}, &error));
  EXPECT_TRUE(error.empty());
}

#if defined(__linux__)
// On this machine: each worker of a compact plan, pinned on a fresh thread, runs on its CPUs.
TEST(placement, real_machine_compact_pins_threads) {
  const placement_plan plan = offload::detail::plan_placement(placement::compact, 2);
  ASSERT_EQ(plan.worker_cpus.size(), 2U);
  EXPECT_FALSE(plan.note.empty());
  expect_steal_orders_are_permutations(plan);
  const std::vector<unsigned> allowed = offload::detail::allowed_cpus();
  ASSERT_FALSE(allowed.empty());
  for (const std::vector<unsigned>& cpus : plan.worker_cpus) {
    ASSERT_FALSE(cpus.empty()) << plan.note;
    for (unsigned cpu : cpus) {
      EXPECT_NE(std::find(allowed.begin(), allowed.end(), cpu), allowed.end()) << cpu;
    }
    bool pinned = false;
    std::string error;
    int ran_on = -1;
    std::thread([&] {
      pinned = offload::detail::pin_current_thread(cpus, &error);
      ran_on = sched_getcpu();
    }).join();
    ASSERT_TRUE(pinned) << error;
    ASSERT_GE(ran_on, 0);
    EXPECT_NE(std::find(cpus.begin(), cpus.end(), static_cast<unsigned>(ran_on)), cpus.end())
        << "ran on CPU " << ran_on;
  }
}

TEST(placement, pinning_to_a_missing_cpu_fails_with_a_reason) {
  bool pinned = true;
  std::string error;
  std::thread([&] {
    pinned = offload::detail::pin_current_thread({100'000}, &error);
  }).join();
  EXPECT_FALSE(pinned);
  EXPECT_NE(error.find("100000"), std::string::npos) << error;
}
#endif

#if !defined(OFFLOAD_HAS_HWLOC)
TEST(placement, without_hwloc_the_note_says_so) {
  const placement_plan plan = offload::detail::plan_placement(placement::scatter, 2);
  EXPECT_NE(plan.note.find("built without hwloc"), std::string::npos) << plan.note;
}
#endif

#if defined(OFFLOAD_HAS_HWLOC)

/// A loaded synthetic hwloc topology, e.g. "pack:2 l3:2 core:4 pu:2"; PU os_index = logical index.
class synthetic_topology {
 public:
  explicit synthetic_topology(const char* description) {
    hwloc_topology_init(&m_topology);
    m_ok = hwloc_topology_set_synthetic(m_topology, description) == 0 &&
           hwloc_topology_load(m_topology) == 0;
  }
  ~synthetic_topology() { hwloc_topology_destroy(m_topology); }
  synthetic_topology(const synthetic_topology&) = delete;
  synthetic_topology& operator=(const synthetic_topology&) = delete;

  bool ok() const { return m_ok; }
  hwloc_topology_t get() const { return m_topology; }
  unsigned count(hwloc_obj_type_t type) const {
    return static_cast<unsigned>(hwloc_get_nbobjs_by_type(m_topology, type));
  }
  placement_plan plan(placement p, unsigned workers) const {
    return offload::detail::plan_placement(p, workers, m_topology);
  }
  /// The `type` ancestor of the PU worker `w` is pinned to (the PU itself for HWLOC_OBJ_PU).
  hwloc_obj_t of(const placement_plan& plan, unsigned w, hwloc_obj_type_t type) const {
    EXPECT_EQ(plan.worker_cpus[w].size(), 1U);
    hwloc_obj_t pu = hwloc_get_pu_obj_by_os_index(m_topology, plan.worker_cpus[w].at(0));
    return type == HWLOC_OBJ_PU ? pu : hwloc_get_ancestor_obj_by_type(m_topology, type, pu);
  }
  /// Distinct `type` objects the first `workers` workers of `plan` sit on.
  std::set<hwloc_obj_t> distinct(const placement_plan& plan,
                                 unsigned workers,
                                 hwloc_obj_type_t type) const {
    std::set<hwloc_obj_t> objects;
    for (unsigned w = 0; w < workers; ++w) objects.insert(of(plan, w, type));
    return objects;
  }

 private:
  hwloc_topology_t m_topology = nullptr;
  bool m_ok = false;
};

constexpr const char* k_two_packages = "pack:2 l3:2 core:4 pu:2";  // 16 cores, 32 PUs

TEST(placement, compact_fills_the_cores_of_one_l3_first_without_siblings) {
  const synthetic_topology topo(k_two_packages);
  ASSERT_TRUE(topo.ok());
  const placement_plan plan = topo.plan(placement::compact, 4);
  EXPECT_EQ(topo.distinct(plan, 4, HWLOC_OBJ_CORE).size(), 4U);
  EXPECT_EQ(topo.distinct(plan, 4, HWLOC_OBJ_L3CACHE).size(), 1U);
  for (unsigned w = 0; w < 4; ++w) {
    EXPECT_EQ(topo.of(plan, w, HWLOC_OBJ_PU)->sibling_rank, 0U) << "worker " << w;
  }
  expect_steal_orders_are_permutations(plan);
  EXPECT_NE(plan.note.find("placement compact (hwloc)"), std::string::npos) << plan.note;
  EXPECT_EQ(plan.note.find("SMT"), std::string::npos) << plan.note;
}

TEST(placement, compact_uses_siblings_only_after_every_core) {
  const synthetic_topology topo(k_two_packages);
  ASSERT_TRUE(topo.ok());
  const unsigned cores = topo.count(HWLOC_OBJ_CORE);
  const unsigned pus = topo.count(HWLOC_OBJ_PU);
  ASSERT_EQ(cores, 16U);
  ASSERT_EQ(pus, 32U);

  const placement_plan one_per_core = topo.plan(placement::compact, cores);
  EXPECT_EQ(topo.distinct(one_per_core, cores, HWLOC_OBJ_CORE).size(), cores);

  const placement_plan all = topo.plan(placement::compact, pus);
  EXPECT_EQ(topo.distinct(all, pus, HWLOC_OBJ_PU).size(), pus);
  // The first `cores` workers still take one PU per core; the rest are their siblings.
  EXPECT_EQ(topo.distinct(all, cores, HWLOC_OBJ_CORE).size(), cores);
  EXPECT_NE(all.note.find("SMT siblings in use"), std::string::npos) << all.note;
}

TEST(placement, scatter_round_robins_over_packages_and_l3s) {
  const synthetic_topology topo(k_two_packages);
  ASSERT_TRUE(topo.ok());
  const placement_plan plan = topo.plan(placement::scatter, 4);
  EXPECT_EQ(topo.distinct(plan, 4, HWLOC_OBJ_L3CACHE).size(), 4U);
  for (unsigned w = 0; w < 4; ++w) {
    EXPECT_EQ(topo.of(plan, w, HWLOC_OBJ_PACKAGE)->logical_index, w % 2) << "worker " << w;
  }
  // Then every core before any sibling.
  const placement_plan cores = topo.plan(placement::scatter, 16);
  EXPECT_EQ(topo.distinct(cores, 16, HWLOC_OBJ_CORE).size(), 16U);
  expect_steal_orders_are_permutations(cores);
}

// Worker 0 of a full compact plan: its SMT sibling, then the 6 other PUs of its L3, then the 8 of
// the other L3 in its package, then the 16 of the other package.
TEST(placement, steal_order_is_nearest_first) {
  const synthetic_topology topo(k_two_packages);
  ASSERT_TRUE(topo.ok());
  const placement_plan plan = topo.plan(placement::compact, 32);
  const std::vector<unsigned>& order = plan.steal_order[0];
  ASSERT_EQ(order.size(), 31U);
  EXPECT_EQ(topo.of(plan, order[0], HWLOC_OBJ_CORE), topo.of(plan, 0, HWLOC_OBJ_CORE));
  for (std::size_t k = 1; k < order.size(); ++k) {
    const bool same_l3 =
        topo.of(plan, order[k], HWLOC_OBJ_L3CACHE) == topo.of(plan, 0, HWLOC_OBJ_L3CACHE);
    const bool same_package =
        topo.of(plan, order[k], HWLOC_OBJ_PACKAGE) == topo.of(plan, 0, HWLOC_OBJ_PACKAGE);
    EXPECT_NE(topo.of(plan, order[k], HWLOC_OBJ_CORE), topo.of(plan, 0, HWLOC_OBJ_CORE)) << k;
    EXPECT_EQ(same_l3, k < 7) << "position " << k;
    EXPECT_EQ(same_package, k < 15) << "position " << k;
  }
  // For every worker the common ancestor with each victim gets no deeper along the order.
  for (unsigned w = 0; w < 32; ++w) {
    int previous = 1 << 30;
    for (unsigned victim : plan.steal_order[w]) {
      const int depth =
          hwloc_get_common_ancestor_obj(
              topo.get(), topo.of(plan, w, HWLOC_OBJ_PU), topo.of(plan, victim, HWLOC_OBJ_PU))
              ->depth;
      EXPECT_LE(depth, previous) << "worker " << w << " victim " << victim;
      previous = depth;
    }
  }
}

// A NUMA node under a group of two L3s: same L3, then same NUMA node, then the other node.
TEST(placement, steal_order_prefers_the_same_numa_node) {
  const synthetic_topology topo("pack:1 group:2 [numa] l3:2 core:2 pu:1");
  ASSERT_TRUE(topo.ok());
  ASSERT_EQ(topo.count(HWLOC_OBJ_NUMANODE), 2U);
  const placement_plan plan = topo.plan(placement::compact, 8);
  const std::vector<unsigned>& order = plan.steal_order[0];
  ASSERT_EQ(order.size(), 7U);
  const hwloc_obj_t node = topo.of(plan, 0, HWLOC_OBJ_GROUP);
  ASSERT_NE(node, nullptr);
  EXPECT_EQ(topo.of(plan, order[0], HWLOC_OBJ_L3CACHE), topo.of(plan, 0, HWLOC_OBJ_L3CACHE));
  for (std::size_t k = 0; k < order.size(); ++k) {
    EXPECT_EQ(topo.of(plan, order[k], HWLOC_OBJ_GROUP) == node, k < 3) << "position " << k;
  }
}

// Equally near victims are taken in rotation after the thief, not all from worker 0.
TEST(placement, steal_order_ties_rotate) {
  const synthetic_topology topo("pack:1 core:4 pu:1");
  ASSERT_TRUE(topo.ok());
  const placement_plan plan = topo.plan(placement::compact, 4);
  EXPECT_EQ(plan.steal_order[0], (std::vector<unsigned>{1, 2, 3}));
  EXPECT_EQ(plan.steal_order[1], (std::vector<unsigned>{2, 3, 0}));
  EXPECT_EQ(plan.steal_order[3], (std::vector<unsigned>{0, 1, 2}));
}

TEST(placement, more_workers_than_pus_wrap_around) {
  const synthetic_topology topo("pack:1 core:2 pu:1");
  ASSERT_TRUE(topo.ok());
  const placement_plan plan = topo.plan(placement::compact, 5);
  ASSERT_EQ(plan.worker_cpus.size(), 5U);
  EXPECT_NE(plan.worker_cpus[0], plan.worker_cpus[1]);
  for (unsigned w = 2; w < 5; ++w) {
    EXPECT_EQ(plan.worker_cpus[w], plan.worker_cpus[w % 2]) << "worker " << w;
  }
  // Workers on the same PU are nearest: worker 2 shares PU 0 with workers 4 and 0.
  EXPECT_EQ(plan.steal_order[2], (std::vector<unsigned>{4, 0, 3, 1}));
  expect_steal_orders_are_permutations(plan);
  EXPECT_NE(plan.note.find("worker i shares the PU of worker i mod 2"), std::string::npos)
      << plan.note;
}

TEST(placement, every_steal_order_is_a_permutation) {
  for (const char* description :
       {"pack:1 core:2 pu:1", k_two_packages, "pack:1 group:2 [numa] l3:2 core:2 pu:2"}) {
    const synthetic_topology topo(description);
    ASSERT_TRUE(topo.ok()) << description;
    const unsigned pus = topo.count(HWLOC_OBJ_PU);
    for (placement p : {placement::compact, placement::scatter}) {
      for (unsigned workers : {0U, 1U, 3U, pus, pus + 5}) {
        SCOPED_TRACE(std::string(description) + " " + std::string(offload::to_string(p)) + " " +
                     std::to_string(workers));
        const placement_plan plan = topo.plan(p, workers);
        ASSERT_EQ(plan.worker_cpus.size(), workers);
        expect_steal_orders_are_permutations(plan);
      }
    }
  }
}

TEST(placement, none_on_a_topology_pins_nobody) {
  const synthetic_topology topo(k_two_packages);
  ASSERT_TRUE(topo.ok());
  const placement_plan plan = topo.plan(placement::none, 3);
  ASSERT_EQ(plan.worker_cpus.size(), 3U);
  for (const auto& cpus : plan.worker_cpus) EXPECT_TRUE(cpus.empty());
  EXPECT_TRUE(plan.steal_order.empty());
  EXPECT_TRUE(plan.note.empty());
}

#else

TEST(placement, synthetic_topologies_need_hwloc) {
  GTEST_SKIP() << "built without hwloc (OFFLOAD_HAS_HWLOC undefined)";
}

#endif

}  // namespace
