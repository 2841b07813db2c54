#pragma once

/// @file
/// @brief A Celery worker's link to RabbitMQ: the thread that owns the AMQP connection, declares
/// what Celery's worker declares, consumes the task queues and the worker's pidbox queue, and
/// sends what other threads post (results, events, acks) in the order they were posted.
/// Reconnects when the connection is lost.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include <offload/broker/celery/amqp_connection.hpp>

namespace offload::broker::celery {

/// One thing to send. An ack names the connection generation its delivery came on: an ack of
/// an older generation is dropped (the broker has put that delivery back already).
struct amqp_op {
  enum class kind { publish, ack } what = kind::publish;
  std::string exchange;
  std::string routing_key;
  amqp_properties properties;
  std::string body;
  std::uint64_t generation = 0;
  std::uint64_t tag = 0;
};

struct amqp_link_options {
  broker_url url;
  std::vector<std::string> queues;
  std::string hostname;  ///< the node name: its pidbox queue is "<hostname>.celery.pidbox"
  unsigned prefetch = 1;
  int queue_max_priority = 0;  ///< > 0: task queues this link declares get x-max-priority
  amqp_connection_options connection;
  std::chrono::milliseconds reconnect_for{30000};
};

/// Called on the link's thread.
struct amqp_link_hooks {
  std::function<void(amqp_message, std::uint64_t generation)> task;
  std::function<void(amqp_message)> control;
  std::function<unsigned()> eta_held;  ///< deliveries waiting for an ETA: added to the prefetch
  /// The connection of `generation` is gone: its unacked deliveries come again.
  std::function<void(std::uint64_t generation)> lost;
  std::function<void(const std::string&)> log;
};

class amqp_worker_link {
 public:
  amqp_worker_link(amqp_link_options options, amqp_link_hooks hooks);
  ~amqp_worker_link();
  amqp_worker_link(const amqp_worker_link&) = delete;
  amqp_worker_link& operator=(const amqp_worker_link&) = delete;

  /// Connects, declares and consumes, then serves until finish(). Throws broker_refused when the
  /// broker refuses the first set-up (a 403, say), and broker_error when it stays unreachable
  /// for reconnect_for.
  void run();
  /// Thread-safe: queues `ops`, sent in order after what was posted before.
  void post(std::vector<amqp_op> ops);
  /// Thread-safe: cancels the consumers of the task queues (deliveries already on their way are
  /// put back).
  void stop_consuming();
  /// Thread-safe: run() returns once what was posted before is sent. The connection closes and
  /// the broker puts back whatever was not acked.
  void finish();
  /// The current connection's generation (1 for the first).
  std::uint64_t generation() const noexcept { return m_generation.load(std::memory_order_acquire); }

 private:
  void setup(amqp_connection& c);
  void serve(amqp_connection& c);
  bool send_posted(amqp_connection& c);
  void wake();

  amqp_link_options m_opts;
  amqp_link_hooks m_hooks;
  int m_wake_fd = -1;  // eventfd: post(), stop_consuming() and finish() wake run()

  std::mutex m_mutex;  // guards m_posted
  std::vector<amqp_op> m_posted;
  std::atomic<bool> m_stop_consuming{false};
  std::atomic<bool> m_finish{false};
  // Release: paired with the acquire in generation(); deliveries of a generation reach the
  // hooks only after it is published.
  std::atomic<std::uint64_t> m_generation{0};

  // The link thread's own.
  std::vector<std::pair<std::string, std::string>> m_consumers;  // consumer tag, queue
  std::string m_control_tag;
  std::uint16_t m_qos = 0;
  bool m_consuming = false;
};

}  // namespace offload::broker::celery
