// A future's shared state on its own (no executor): publication, continuations attached before,
// after and while it becomes ready, cancellation and its stop token.
#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <offload/detail/shared_state.hpp>
#include <offload/error.hpp>

namespace {

using offload::detail::shared_state;

/// Counts its firings; freed by the state after firing (heap-owned).
struct counting final : offload::detail::continuation {
  explicit counting(std::atomic<int>& n) : fired(n) {}
  void fire() noexcept override { fired.fetch_add(1); }
  bool runs_user_code() const noexcept override { return false; }
  std::atomic<int>& fired;
};

/// A state with its two initial references, dropped at the end of the scope.
struct state_holder {
  shared_state<int>* s = shared_state<int>::create(nullptr);
  ~state_holder() {
    s->release();
    s->release();
  }
};

TEST(SharedState, AValueSetOnOneThreadIsTakenOnAnother) {
  state_holder h;
  std::thread producer([&] {
    ASSERT_TRUE(h.s->try_start());
    h.s->set_value(42);
  });
  h.s->wait();
  producer.join();
  EXPECT_TRUE(h.s->is_ready());
  EXPECT_EQ(h.s->state(), offload::task_state::succeeded);
  EXPECT_EQ(h.s->take(), 42);
}

TEST(SharedState, ContinuationsFireOnceWhetherAttachedBeforeOrAfter) {
  state_holder h;
  std::atomic<int> fired{0};
  h.s->attach(new counting(fired));
  EXPECT_EQ(fired.load(), 0);
  ASSERT_TRUE(h.s->try_start());
  h.s->set_value(1);
  EXPECT_EQ(fired.load(), 1);
  h.s->attach(new counting(fired));  // ready: fires at once
  EXPECT_EQ(fired.load(), 2);
}

TEST(SharedState, ContinuationsAttachedWhileItBecomesReadyEachFireOnce) {
  for (int round = 0; round < 200; ++round) {
    state_holder h;
    std::atomic<int> fired{0};
    constexpr int k_per_thread = 50;
    std::vector<std::thread> attachers;
    for (int t = 0; t < 2; ++t) {
      attachers.emplace_back([&] {
        for (int i = 0; i < k_per_thread; ++i) h.s->attach(new counting(fired));
      });
    }
    ASSERT_TRUE(h.s->try_start());
    h.s->set_value(round);
    for (auto& t : attachers) t.join();
    EXPECT_EQ(fired.load(), 2 * k_per_thread);
  }
}

TEST(SharedState, CancelBeforeStartWinsAndStopsTheToken) {
  state_holder h;
  const std::stop_token token = h.s->stop_token();
  EXPECT_TRUE(h.s->cancel("test"));
  EXPECT_FALSE(h.s->try_start());
  EXPECT_TRUE(h.s->is_ready());
  EXPECT_EQ(h.s->state(), offload::task_state::cancelled);
  EXPECT_TRUE(token.stop_requested());
  EXPECT_THROW((void)h.s->take(), offload::cancelled);
  EXPECT_FALSE(h.s->cancel("again"));  // ready: nothing to cancel
}

TEST(SharedState, AnExceptionIsKeptWithItsFinalState) {
  state_holder h;
  ASSERT_TRUE(h.s->try_start());
  h.s->set_exception(std::make_exception_ptr(std::runtime_error("boom")));
  EXPECT_EQ(h.s->state(), offload::task_state::failed);
  EXPECT_THROW((void)h.s->take(), std::runtime_error);
}

}  // namespace
