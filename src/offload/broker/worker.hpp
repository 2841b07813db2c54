#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include <offload/broker/transport.hpp>

namespace offload::broker {

struct worker_options {
  std::string queue = "tasks";
  unsigned threads = 2;        ///< offload::executor workers running the tasks
  unsigned max_in_flight = 0;  ///< received but not finished; 0: 2 × threads
  unsigned max_attempts = 3;   ///< total executions of a failing task before it is dead-lettered
  /// The broker may stay unreachable this long before run() gives up with broker_error.
  std::chrono::milliseconds reconnect_for{30000};
  bool verbose = false;  ///< log every task to stderr
};

struct worker_stats {
  std::uint64_t succeeded = 0;
  std::uint64_t retried = 0;
  std::uint64_t dead_lettered = 0;  ///< failed for good, unknown or malformed
  std::uint64_t reconnects = 0;
};

/// Consumes named tasks from one queue, runs them on an offload::executor and, once a task is
/// done, replies to its reply_to queue (correlation id echoed) and acks it. A failed task is
/// published again with attempt + 1 until max_attempts, then dead-lettered with the error as its
/// reason and an "error" reply; unknown tasks and malformed messages go to the dead letters at
/// once. The transport is used from run()'s thread only.
class worker {
 public:
  using connector = std::function<std::unique_ptr<transport>()>;

  worker(connector connect, worker_options opts);

  /// Runs until stop(); throws broker_error if the broker stays unreachable for reconnect_for.
  /// On stop, waits for the tasks in flight and finishes them (reply, ack) before returning.
  void run();
  /// Async-signal-safe: asks run() to return.
  void stop() noexcept { m_stop.store(true, std::memory_order_relaxed); }
  worker_stats stats() const { return m_stats; }

 private:
  struct completion {
    delivery d;
    bool ok = false;
    bool permanent = false;  // not worth retrying
    std::string result;      // ok: the result; otherwise the error
  };

  void start(delivery d);
  /// Replies, acks, retries or dead-letters a completed message. A command the broker refuses
  /// (broker_refused) dead-letters that message with the reason; a lost connection throws.
  void finish(transport& t, const completion& c);
  void finish_or_throw(transport& t, const completion& c);
  void log(const std::string& line) const;

  connector m_connect;
  worker_options m_opts;
  std::atomic<bool> m_stop{false};
  worker_stats m_stats;
  class executor_holder;
  std::shared_ptr<executor_holder> m_exec;

  std::mutex m_mutex;  // guards m_done (slow path: one lock per finished task)
  std::condition_variable m_done_cv;
  std::deque<completion> m_done;
  unsigned m_in_flight = 0;  // run()'s thread only
};

}  // namespace offload::broker
