#pragma once

// One-shot completion flag used by every peer adapter, so that all of them wait for a result the
// same way offload's future does: spin briefly, then block (futex via std::atomic::wait).

#include <atomic>
#include <cstdint>

namespace offload_bench {

class completion {
 public:
  void set() {
    m_done.store(1, std::memory_order_release);
    m_done.notify_one();
  }
  void wait() {
    for (int i = 0; i < 2000; ++i) {
      if (m_done.load(std::memory_order_acquire) != 0)
        return;
    }
    m_done.wait(0, std::memory_order_acquire);
  }

 private:
  std::atomic<std::uint32_t> m_done{0};
};

}  // namespace offload_bench
