// A task that overflows its fiber's stack hits the guard page: the process dies with SIGSEGV
// instead of corrupting memory; under AddressSanitizer, ASan reports the same fault as a stack
// overflow and exits 1. (Death tests fork.)

#include <csignal>

#include <gtest/gtest.h>

#include <offload/config.hpp>
#include <offload/offload.hpp>

namespace {

[[gnu::noinline]] int recurse(int depth) {
  volatile char frame[1024];
  frame[0] = static_cast<char>(depth);
  if (depth == 0)
    return frame[0];
  return recurse(depth - 1) + frame[0];  // not a tail call: every frame stays on the stack
}

}  // namespace

TEST(FiberGuard, StackOverflowHitsTheGuardPage) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  auto overflow = [] {
    offload::executor ex{
        offload::executor_options{.workers = 1, .fiber_stack_size = std::size_t{64} << 10}};
    (void)
        ex.submit([] {
            return recurse(1'000'000);
          }).get();  // ~1 GB of frames
  };
#if OFFLOAD_ASAN
  EXPECT_EXIT(overflow(), testing::ExitedWithCode(1), "stack-overflow");
#else
  EXPECT_EXIT(overflow(), testing::KilledBySignal(SIGSEGV), "");
#endif
}

TEST(FiberGuard, DeepButBoundedRecursionFits) {
  offload::executor ex{
      offload::executor_options{.workers = 1, .fiber_stack_size = std::size_t{256} << 10}};
  EXPECT_EQ(ex.submit([] {
                return recurse(100);
              }).get() &
                0xff,
            recurse(100) & 0xff);
}
