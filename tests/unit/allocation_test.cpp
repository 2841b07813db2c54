// The small-buffer claim: a task whose callable fits the inline buffer (at least 48 bytes) costs
// no heap allocation on the submit -> run -> complete path, once pools and queues are warm.

#include <gtest/gtest.h>

#include <offload/offload.hpp>

// The replaced operators below pair malloc/aligned_alloc with free, which is correct; GCC's
// mismatch check cannot see that the replacements form one allocator.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <limits>
#include <new>
#include <string>

#include "unit/test_support.hpp"

namespace {
std::atomic<long> g_allocations{0};
}

// Counts every allocation in the process (all threads).
void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n))
    return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, std::align_val_t a) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  const auto al = static_cast<std::size_t>(a);
  if (void* p = std::aligned_alloc(al, (n + al - 1) / al * al))
    return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  std::free(p);
}

namespace {

constexpr int k_tasks = 2000;

// Warms pools and queues past the largest in-flight count the measured batch can reach: the workers
// are held on a gate while two warm-up batches are queued, so all of them are in flight at once.
// The measured batch then runs freely and never exceeds that peak. (Two batches, not one: a queue
// whose head and tail blocks are both partly used spans one block more than its element count.)
template <class Submit, class Finish = void (*)()>
long allocations_per_batch(
    offload::executor& ex, Submit submit_batch, Finish finish = [] {}) {
  for (int warm = 0; warm < 2; ++warm) {
    offload_test::gate g;
    for (unsigned w = 0; w < ex.worker_count(); ++w)
      ex.post([&g] {
        g.wait();
      });
    submit_batch();
    submit_batch();
    g.open();
    finish();
    ex.wait_idle();
  }
  // The fewest allocations of three measured batches: a per-task allocation would show in every
  // batch (k_tasks of them), while a rare queue-block allocation under scheduling noise on a
  // loaded machine shows in one batch at most.
  long fewest = std::numeric_limits<long>::max();
  for (int batch = 0; batch < 3; ++batch) {
    const long before = g_allocations.load();
    submit_batch();
    finish();
    ex.wait_idle();
    fewest = std::min(fewest, g_allocations.load() - before);
  }
  return fewest;
}

TEST(Allocation, InlineCallableIsNeverHeapAllocated) {
  static_assert(offload::detail::k_task_inline_size >= 48);
  offload::executor ex{{.workers = 2}};
  std::atomic<long> sum{0};
  std::array<long, 5> payload{1, 2, 3, 4, 5};  // 40 bytes + the 8-byte pointer below = 48
  auto task = [payload, &sum] {
    sum.fetch_add(payload[4], std::memory_order_relaxed);
  };
  static_assert(sizeof(task) == 48);
  EXPECT_EQ(allocations_per_batch(ex,
                                  [&] {
                                    for (int i = 0; i < k_tasks; ++i) ex.post(task);
                                  }),
            0);
}

TEST(Allocation, SubmitWithSmallResultIsNeverHeapAllocated) {
  offload::executor ex{{.workers = 2}};
  std::array<long, 6> payload{1, 2, 3, 4, 5, 6};
  std::vector<offload::future<long>> futures;
  futures.reserve(k_tasks);
  EXPECT_EQ(allocations_per_batch(
                ex,
                [&] {
                  futures.clear();
                  for (int i = 0; i < k_tasks; ++i) {
                    futures.push_back(ex.submit([payload] {
                      return payload[5];
                    }));
                  }
                },
                [&] {
                  for (auto& f : futures) f.wait();
                }),
            0);
  EXPECT_EQ(futures.back().get(), 6);
}

TEST(Allocation, OversizedCallableIsBoxedOnce) {
  offload::executor ex{{.workers = 2}};
  std::array<char, 256> big{};
  auto task = [big] {
    (void)big;
  };
  static_assert(!offload::detail::k_fits_inline<decltype(task)>);
  EXPECT_EQ(allocations_per_batch(ex,
                                  [&] {
                                    for (int i = 0; i < k_tasks; ++i) ex.post(task);
                                  }),
            k_tasks);
}

}  // namespace

namespace {

template <std::size_t Align>
struct alignas(Align) alignment_probe {
  char c;
};

/// The most bytes a callable aligned to Align keeps inline in a task node.
template <std::size_t Align>
constexpr std::size_t k_largest_inline =
    offload::detail::k_task_inline_capacity<alignment_probe<Align>>;

/// A callable of exactly k_largest_inline<Align> bytes that checks its own bytes when run.
template <std::size_t Align>
struct alignas(Align) largest_inline_task {
  std::array<unsigned char, k_largest_inline<Align> - sizeof(int*)> bytes;
  int* intact;
  void operator()() const {
    *intact = std::all_of(bytes.begin(), bytes.end(), [](unsigned char b) {
      return b == 0xA5;
    });
  }
};

template <std::size_t Align>
struct alignas(Align) too_large_task {
  std::array<unsigned char, k_largest_inline<Align> + Align> bytes;
  void operator()() const {}
};

/// Builds a node holding the largest inline callable, sets the name and enqueue time that live in
/// the block's tail, and checks that neither overwrote the other.
template <std::size_t Align>
void expect_tail_and_callable_apart() {
  static_assert(sizeof(largest_inline_task<Align>) == k_largest_inline<Align>);
  static_assert(offload::detail::k_fits_inline<largest_inline_task<Align>>);
  static_assert(!offload::detail::k_fits_inline<too_large_task<Align>>);
  int intact = -1;
  largest_inline_task<Align> task{};
  task.bytes.fill(0xA5);
  task.intact = &intact;
  auto* name = new offload::detail::shared_text("tail");
  offload::detail::task_node* node = offload::detail::make_task(task);
  node->set_name(offload::detail::text_ref::share(name));
  node->set_enqueued_ns(0x0123'4567'89ab'cdefULL);
  EXPECT_EQ(node->name(), &name->text);
  EXPECT_EQ(node->enqueued_ns(), 0x0123'4567'89ab'cdefULL);
  (void)offload::detail::run_task(node);
  EXPECT_EQ(intact, 1) << "alignment " << Align;
  EXPECT_EQ(name->refs.load(), 1u) << "the node dropped its reference to its name";
  name->release();
}

}  // namespace

// The largest inline callables (8- and 16-aligned) end where the tail fields (name, enqueue time)
// begin: a task's name and timing sample never overwrite its callable, nor the reverse.
TEST(Allocation, LargestInlineCallablesLeaveTheTailFieldsApart) {
  EXPECT_EQ(k_largest_inline<8>, 88u);
  EXPECT_EQ(k_largest_inline<16>, 80u);
  expect_tail_and_callable_apart<8>();
  expect_tail_and_callable_apart<16>();
}
