#pragma once

// Small helpers shared by the tests.

#include <atomic>
#include <chrono>
#include <thread>

namespace offload_test {

/// A one-shot gate: tasks block in wait() until open() is called. Used to hold workers busy.
class gate {
 public:
  void open() {
    m_open.store(true, std::memory_order_release);
    m_open.notify_all();
  }
  void wait() const { m_open.wait(false, std::memory_order_acquire); }

 private:
  std::atomic<bool> m_open{false};
};

/// Spins (yielding) until pred() holds; the CTest timeout bounds a failure.
template <class Pred>
void eventually(Pred pred) {
  while (!pred()) std::this_thread::yield();
}

}  // namespace offload_test
