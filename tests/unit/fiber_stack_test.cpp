// Fiber stacks when the system runs out of them: every stack made has its guard page; past
// vm.max_map_count or an address-space limit, no stack is made unguarded, an executor that cannot
// map its first fiber stack fails at construction, and tasks that cannot get a stack to wait on
// fail with a reason or wait another way. Each case runs in a child process (a death test), since
// it exhausts the process's mappings. Plain builds only: sanitizer runtimes need those mappings.

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include <offload/detail/fiber_stack.hpp>
#include <offload/offload.hpp>

namespace {

/// True if the page just below `low` is mapped with no access (/proc/self/maps says ---p).
bool guard_below(const char* low) {
  const auto page =
      reinterpret_cast<std::uintptr_t>(low) - offload::detail::guarded_stack::page_size();
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    std::uintptr_t from = 0;
    std::uintptr_t to = 0;
    char dash = 0;
    std::string perms;
    std::istringstream in(line);
    in >> std::hex >> from >> dash >> to >> perms;
    if (page >= from && page < to)
      return perms.rfind("---", 0) == 0;
  }
  return false;
}

/// Maps single pages until mmap() fails, alternating protections so that none merge; then gives
/// `spare` of them back. What is left of vm.max_map_count is about `spare` mappings.
std::vector<void*> exhaust_mappings(std::size_t spare) {
  std::vector<void*> pages;
  pages.reserve(70000);
  const std::size_t page = offload::detail::guarded_stack::page_size();
  for (;;) {
    const int prot = pages.size() % 2 == 0 ? PROT_READ : PROT_NONE;
    void* p = ::mmap(nullptr, page, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
      break;
    pages.push_back(p);
  }
  for (std::size_t i = 0; i < spare && !pages.empty(); ++i) {
    ::munmap(pages.back(), page);
    pages.pop_back();
  }
  return pages;
}

// Children of the death tests below: each ends the process with its verdict (0: passed).

[[noreturn]] void never_unguarded_child() {
  std::vector<void*> held = exhaust_mappings(40);
  int made = 0;
  int failed = 0;
  for (int i = 0; i < 200; ++i) {
    offload::detail::stack_bounds b;
    try {
      (void)offload::detail::guarded_stack(64 << 10, &b).allocate();
      if (!guard_below(b.low)) {
        std::fprintf(stderr, "unguarded stack %d\n", i);
        std::_Exit(3);
      }
      ++made;
    } catch (const std::system_error& e) {
      if (std::string(e.what()).find("guarded fiber stack") == std::string::npos)
        std::_Exit(4);
      ++failed;
    }
  }
  std::_Exit(failed > 0 && made > 0 ? 0 : 5);
  std::_Exit(99);
}

[[noreturn]] void first_stack_child() {
  rlimit limit{std::size_t{512} << 20, std::size_t{512} << 20};
  if (::setrlimit(RLIMIT_AS, &limit) != 0)
    std::_Exit(6);
  try {
    offload::executor ex{{.workers = 1, .fiber_stack_size = std::size_t{1} << 30}};
    std::_Exit(7);
  } catch (const std::system_error& e) {
    const std::string what = e.what();
    std::_Exit(what.find("fiber_stack_size") != std::string::npos ? 0 : 8);
  }
  std::_Exit(99);
}

[[noreturn]] void waits_without_stacks_child() {
  constexpr int k_tasks = 2000;
  offload::executor ex{{.workers = 1, .fiber_stack_size = 64 << 10}};
  std::vector<offload::promise<int>> gates(k_tasks);
  std::vector<offload::future<int>> gate_futures;
  for (auto& g : gates) gate_futures.push_back(g.get_future());
  std::vector<void*> held = exhaust_mappings(60);
  std::vector<offload::future<int>> waiters;
  waiters.reserve(k_tasks);
  for (int i = 0; i < k_tasks; ++i) {
    waiters.push_back(ex.submit([&gate_futures, i] {
      return gate_futures[static_cast<std::size_t>(i)].get();
    }));
  }
  for (auto& g : gates) g.set_value(1);
  int ok = 0;
  int refused = 0;
  for (auto& f : waiters) {
    try {
      ok += f.get();
    } catch (const offload::error&) {
      ++refused;
    }
  }
  ex.shutdown();
  std::fprintf(stderr, "ok %d refused %d\n", ok, refused);
  std::_Exit(ok + refused == k_tasks ? 0 : 9);
  std::_Exit(99);
}

TEST(GuardedStack, EveryStackHasItsGuardPage) {
  std::vector<offload::detail::stack_bounds> bounds(8);
  std::vector<boost::context::stack_context> stacks;
  for (auto& b : bounds) {
    offload::detail::guarded_stack alloc(64 << 10, &b);
    stacks.push_back(alloc.allocate());
    EXPECT_TRUE(guard_below(b.low));
    EXPECT_GE(b.size, std::size_t{64} << 10);
  }
  for (auto& s : stacks) offload::detail::guarded_stack(64 << 10, nullptr).deallocate(s);
}

// Past vm.max_map_count the guard's mprotect() (which splits the mapping) fails: allocate()
// throws rather than hand out an unguarded stack.
TEST(GuardedStackDeathTest, NeverUnguardedPastMaxMapCount) {
  EXPECT_EXIT(never_unguarded_child(), ::testing::ExitedWithCode(0), "");
}

// An executor whose worker cannot map its first fiber stack fails at construction with an
// error naming the option, instead of terminating from the worker's thread.
TEST(FiberStackDeathTest, ConstructionFailsWhenTheFirstStackCannotBeMapped) {
  EXPECT_EXIT(first_stack_child(), ::testing::ExitedWithCode(0), "");
}

// 2000 tasks wait on one worker while no new fiber stack can be mapped: no crash; each either
// completes or fails with offload::error, and the executor shuts down.
TEST(FiberStackDeathTest, WaitsWithoutStacksCompleteOrFailCleanly) {
  EXPECT_EXIT(waits_without_stacks_child(), ::testing::ExitedWithCode(0), "");
}

}  // namespace
