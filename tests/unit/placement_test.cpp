// executor_options::placement on this machine: compact and scatter pin each worker to one CPU.

#include <atomic>
#include <set>
#include <vector>

#include <gtest/gtest.h>
#include <sched.h>

#include <offload/offload.hpp>

namespace {

/// The CPUs the calling thread may run on.
std::set<int> thread_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::set<int> cpus;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    for (std::size_t c = 0; c < CPU_SETSIZE; ++c) {
      if (CPU_ISSET(c, &set))
        cpus.insert(static_cast<int>(c));
    }
  }
  return cpus;
}

/// Affinity of each worker, seen from a task that holds it until every worker holds one.
std::vector<std::set<int>> worker_affinities(offload::placement p, unsigned workers) {
  offload::executor ex{offload::executor_options{.workers = workers, .placement = p}};
  std::atomic<unsigned> arrived{0};
  std::vector<offload::future<std::set<int>>> seen;
  for (unsigned i = 0; i < workers; ++i) {
    seen.push_back(ex.submit([&arrived, workers] {
      arrived.fetch_add(1);
      while (arrived.load() < workers) {
      }  // hold this worker: every task runs on its own worker
      return thread_cpus();
    }));
  }
  std::vector<std::set<int>> out;
  for (auto& f : seen) out.push_back(f.get());
  return out;
}

}  // namespace

TEST(Placement, CompactAndScatterPinEachWorkerToItsOwnCpu) {
  const std::set<int> allowed = thread_cpus();
  if (allowed.size() < 2)
    GTEST_SKIP() << "needs 2 allowed CPUs";
  for (offload::placement p : {offload::placement::compact, offload::placement::scatter}) {
    const auto seen = worker_affinities(p, 2);
    std::set<int> used;
    for (const auto& cpus : seen) {
      ASSERT_EQ(cpus.size(), 1u) << offload::to_string(p);
      EXPECT_TRUE(allowed.count(*cpus.begin())) << offload::to_string(p);
      used.insert(*cpus.begin());
    }
    EXPECT_EQ(used.size(), 2u) << offload::to_string(p) << ": both workers on one CPU";
  }
}

TEST(Placement, NoteSaysWhatWasDone) {
  offload::executor none{offload::executor_options{.workers = 2}};
  EXPECT_TRUE(none.placement_note().empty());
  offload::executor compact{
      offload::executor_options{.workers = 2, .placement = offload::placement::compact}};
  EXPECT_NE(compact.placement_note().find("compact"), std::string::npos)
      << compact.placement_note();
#if !defined(OFFLOAD_HAS_HWLOC)
  EXPECT_NE(compact.placement_note().find("without hwloc"), std::string::npos)
      << compact.placement_note();
#endif
}

TEST(Placement, NoneLeavesAffinityAlone) {
  const std::set<int> allowed = thread_cpus();
  for (const auto& cpus : worker_affinities(offload::placement::none, 2)) EXPECT_EQ(cpus, allowed);
}
