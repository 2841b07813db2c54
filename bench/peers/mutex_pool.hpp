#pragma once

// The baseline: a plain thread pool with one std::queue behind a mutex and a condition variable.

#include <condition_variable>
#include <functional>
#include <mutex>
#include <queue>
#include <thread>
#include <vector>

namespace offload_bench {

class mutex_pool {
 public:
  explicit mutex_pool(unsigned workers) {
    for (unsigned i = 0; i < workers; ++i)
      m_threads.emplace_back([this] {
        run();
      });
  }
  ~mutex_pool() {
    {
      std::lock_guard lock(m_mutex);
      m_stop = true;
    }
    m_cv.notify_all();
    for (auto& t : m_threads) t.join();
  }
  void post(std::function<void()> fn) {
    {
      std::lock_guard lock(m_mutex);
      m_tasks.push(std::move(fn));
    }
    m_cv.notify_one();
  }

 private:
  void run() {
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock lock(m_mutex);
        m_cv.wait(lock, [this] {
          return m_stop || !m_tasks.empty();
        });
        if (m_tasks.empty())
          return;
        fn = std::move(m_tasks.front());
        m_tasks.pop();
      }
      fn();
    }
  }
  std::mutex m_mutex;
  std::condition_variable m_cv;
  std::queue<std::function<void()>> m_tasks;
  bool m_stop = false;
  std::vector<std::thread> m_threads;
};

}  // namespace offload_bench
