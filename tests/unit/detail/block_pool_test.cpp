#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <offload/detail/block_pool.hpp>

namespace {

using offload::detail::allocate_block;
using offload::detail::block_pool;
using offload::detail::k_block_size;
using offload::detail::k_cache_line;

TEST(BlockPool, BlocksAreAlignedAndReusedOnTheSameThread) {
  auto a = allocate_block();
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(a.memory) % k_cache_line, 0u);
  block_pool::deallocate(a.home, a.memory);
  auto b = allocate_block();
  EXPECT_EQ(a.memory, b.memory);  // LIFO reuse from the local free list
  block_pool::deallocate(b.home, b.memory);
}

TEST(BlockPool, RemoteFreesReturnToTheOwner) {
  constexpr int k_blocks = 1000;
  std::vector<offload::detail::pooled_block> blocks;
  for (int i = 0; i < k_blocks; ++i) blocks.push_back(allocate_block());
  std::set<void*> original;
  for (auto& b : blocks) original.insert(b.memory);
  // Drain the local list so later allocations must come from the remote list or the heap.
  std::vector<offload::detail::pooled_block> spare;
  std::thread other([&] {
    for (auto& b : blocks) block_pool::deallocate(b.home, b.memory);
  });
  other.join();
  int reused = 0;
  for (int i = 0; i < k_blocks; ++i) {
    auto b = allocate_block();
    if (original.count(b.memory) != 0)
      ++reused;
    spare.push_back(b);
  }
  EXPECT_EQ(reused, k_blocks);
  for (auto& b : spare) block_pool::deallocate(b.home, b.memory);
}

// Two threads free the owner's blocks concurrently (CAS pushes racing). Every block must come
// back to the owner exactly once: none lost, none handed out twice.
TEST(BlockPool, ConcurrentRemoteFreesLoseNothing) {
  constexpr std::size_t k_blocks = 2048;
  for (int round = 0; round < 20; ++round) {
    std::vector<offload::detail::pooled_block> blocks;
    for (std::size_t i = 0; i < k_blocks; ++i) {
      blocks.push_back(allocate_block());
      std::memset(blocks.back().memory, 0xAB, k_block_size);
    }
    std::set<void*> freed;
    for (auto& b : blocks) freed.insert(b.memory);
    std::thread t1([&] {
      for (std::size_t i = 0; i < k_blocks; i += 2)
        block_pool::deallocate(blocks[i].home, blocks[i].memory);
    });
    std::thread t2([&] {
      for (std::size_t i = 1; i < k_blocks; i += 2)
        block_pool::deallocate(blocks[i].home, blocks[i].memory);
    });
    t1.join();
    t2.join();
    // Hold every block we get, so none is reused; the local list holds at most
    // k_block_cache_limit other blocks, then the remote list must yield all of ours.
    std::set<void*> held;
    std::size_t back = 0;
    for (std::size_t i = 0;
         i < k_blocks + offload::detail::k_block_cache_limit + 1 && back < k_blocks;
         ++i) {
      auto b = allocate_block();
      ASSERT_TRUE(held.insert(b.memory).second) << "a block was handed out twice";
      if (freed.count(b.memory) != 0)
        ++back;
    }
    EXPECT_EQ(back, k_blocks);
    for (void* p : held) block_pool::deallocate(&block_pool::local(), p);
  }
}

}  // namespace
