// The lane search on its own: a pool's state with hand-filled deques and inboxes, searched by
// one worker on this thread. Checks the lane order, the starvation guard's bound (G5: each lower
// lane served at least once per 3 × starvation_guard picks while higher lanes stay full), the
// inbox-fairness round, and stealing.
#include <cstddef>
#include <functional>
#include <memory>
#include <vector>

#include <gtest/gtest.h>

#include <offload/detail/pool/lane_search.hpp>
#include <offload/detail/task_node.hpp>

namespace {

using offload::lane;
using offload::detail::task_node;

/// No dead letters here.
struct no_sink final : offload::detail::failure_sink {
  void add_dead_letter(offload::dead_letter) noexcept override {}
};

/// pool_search with the scheduler interface stubbed out (nothing here runs tasks) and the
/// workers made by hand: the test thread acts as worker 0.
class search_only final : public offload::detail::pool_search {
 public:
  search_only(offload::executor_options o, offload::detail::failure_sink& s, unsigned workers)
      : pool_search(std::move(o), s) {
    for (unsigned i = 0; i < workers; ++i) {
      m_workers.push_back(std::make_unique<offload::detail::worker>(i, 64, m_inboxes));
      m_workers.back()->picks_to_guard = m_options.starvation_guard;
    }
  }
  ~search_only() {
    // Whatever the test left queued is freed.
    for (std::size_t l = 0; l < offload::k_lane_count; ++l) {
      for (auto& w : m_workers) {
        while (auto n = w->deque(l).pop()) free(*n);
      }
      task_node* n = nullptr;
      while (m_inboxes[l].try_dequeue(n)) free(n);
    }
  }

  /// Pushes a task of lane `l` on worker `w`'s deque.
  void push(unsigned w, lane l) {
    task_node* n = make(l);
    m_workers[w]->deque(index_of(l)).push(n);
  }
  /// Puts a task of lane `l` on the lane's injection queue.
  void inject(lane l) { ASSERT_TRUE(m_inboxes[index_of(l)].enqueue(make(l))); }

  /// Worker 0's next task's lane (and frees it); lane::inherit if none.
  lane take() {
    task_node* n = find_task(*m_workers[0]);
    if (n == nullptr)
      return lane::inherit;
    const lane l = n->lane;
    free(n);
    return l;
  }
  std::uint64_t steals() const { return m_workers[0]->counters.steals.read(); }

  void schedule(task_node*) override {}
  bool help_until(const std::function<bool()>&) override { return true; }
  void schedule_in_lane(task_node*) override {}
  lane running_lane() const noexcept override { return lane::normal; }
  void call_after(offload::clock::duration, task_node*, const void*) override {}
  bool cancel_call(const void*) noexcept override { return false; }
  bool run_local_task() override { return false; }
  bool suspend(offload::detail::suspend_arm&) override { return false; }
  void sleep_for(offload::clock::duration) override {}
  bool yield_task() override { return false; }

 private:
  task_node* make(lane l) {
    mark_lane_used(index_of(l));
    task_node* n = offload::detail::make_task([] {});
    n->lane = l;
    return n;
  }
  static void free(task_node* n) {
    offload::detail::discard_task(n, offload::detail::discard_reason::shutdown);
  }
};

TEST(LaneSearch, TakesTheHighestLaneFirstAndItsOwnDequeLifo) {
  no_sink sink;
  search_only s({.workers = 1}, sink, 1);
  s.push(0, lane::low);
  s.push(0, lane::normal);
  s.push(0, lane::critical);
  s.inject(lane::high);
  EXPECT_EQ(s.take(), lane::critical);
  EXPECT_EQ(s.take(), lane::high);  // the inbox of a higher lane before a lower deque
  EXPECT_EQ(s.take(), lane::normal);
  EXPECT_EQ(s.take(), lane::low);
  EXPECT_EQ(s.take(), lane::inherit);  // nothing left
}

// G5: with critical always full, each lower lane is served at least once per 3 guard picks,
// so at least once per 3 × starvation_guard tasks.
TEST(LaneSearch, TheStarvationGuardServesEveryLowerLaneWithinItsBound) {
  constexpr unsigned k_guard = 4;
  no_sink sink;
  search_only s({.workers = 1, .starvation_guard = k_guard}, sink, 1);
  for (int i = 0; i < 40; ++i) {
    s.push(0, lane::high);
    s.push(0, lane::normal);
    s.push(0, lane::low);
  }
  std::vector<std::size_t> last(offload::k_lane_count, 0);
  std::size_t worst_gap[offload::k_lane_count] = {};
  for (std::size_t pick = 1; pick <= 100; ++pick) {
    s.push(0, lane::critical);  // critical never runs dry
    const lane l = s.take();
    ASSERT_NE(l, lane::inherit);
    const std::size_t i = index_of(l);
    worst_gap[i] = std::max(worst_gap[i], pick - last[i]);
    last[i] = pick;
  }
  for (const lane l : {lane::high, lane::normal, lane::low}) {
    EXPECT_GT(last[index_of(l)], 0u) << to_string(l) << " never served";
    EXPECT_LE(worst_gap[index_of(l)], 3 * k_guard) << to_string(l);
  }
}

TEST(LaneSearch, AnInboxIsCheckedFirstEveryFewSearchesSoLocalWorkCannotStarveIt) {
  no_sink sink;
  search_only s({.workers = 1}, sink, 1);
  s.inject(lane::normal);
  bool inbox_served = false;
  for (int i = 0; i < 200 && !inbox_served; ++i) {
    s.push(0, lane::critical);
    s.push(0, lane::critical);  // local work keeps growing
    // The injected normal task is below critical: only the inbox-first round reaches it.
    inbox_served = s.take() == lane::normal;
  }
  EXPECT_TRUE(inbox_served);
}

TEST(LaneSearch, AnIdleWorkerStealsFromAnother) {
  no_sink sink;
  search_only s({.workers = 2}, sink, 2);
  s.push(1, lane::normal);
  EXPECT_EQ(s.take(), lane::normal);
  EXPECT_EQ(s.steals(), 1u);
  EXPECT_EQ(s.take(), lane::inherit);
}

}  // namespace
