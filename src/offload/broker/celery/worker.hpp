#pragma once

/// @file
/// @brief A Celery worker in C++: serves the tasks of a task_registry to unchanged Python Celery
/// clients over Redis (kombu's transport) or RabbitMQ (AMQP 0-9-1), storing results in the Redis
/// result backend or sending them to the client's reply queue (rpc://), on an offload::executor
/// the caller owns.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <offload/broker/celery/task_message.hpp>
#include <offload/broker/celery/task_registry.hpp>
#include <offload/executor.hpp>

namespace offload::broker::celery {

struct worker_options {
  std::string broker = "redis://127.0.0.1:6379/0";  ///< Celery's broker URL
  /// redis://… or rpc:// (an amqp:// broker only); empty: the broker's (Redis) or rpc:// (AMQP)
  std::string result_backend;
  std::vector<std::string> queues{"celery"};
  std::string hostname;  ///< the node name; empty: "celery-cpp@<host name>"
  /// Messages in hand that are ready or running; 0: 4 × the executor's workers. Tasks waiting
  /// for their ETA do not count (as Celery raises its prefetch for them), up to max_eta_held.
  unsigned prefetch = 0;
  unsigned max_eta_held = 10000;
  /// Past this a message recorded as unacked is restored by whichever worker looks (kombu's
  /// transport option; use the Python workers' value). This worker refreshes everything it holds
  /// (waiting or running) every visibility_timeout / 4, and restores what others left, at start
  /// and every restore_every.
  std::chrono::seconds visibility_timeout{3600};
  std::chrono::seconds restore_every{100};
  std::chrono::seconds result_expires{86400};  ///< 0: results never expire
  std::chrono::milliseconds heartbeat{2000};   ///< worker-heartbeat interval
  bool task_events = true;                     ///< send task-* events (Celery's -E)
  /// The broker may stay unreachable this long before run() gives up with broker_error.
  std::chrono::milliseconds reconnect_for{30000};
  decode_limits limits{};
  /// RabbitMQ: task queues this worker declares (only those missing) get x-max-priority; 0:
  /// none. Declare them as the Python app does (task_queue_max_priority).
  int queue_max_priority = 0;
  std::chrono::seconds amqp_heartbeat{60};  ///< RabbitMQ: the AMQP heartbeat asked for; 0: none
  /// amqps://: the CA bundle the broker's certificate must chain to; empty: not verified.
  std::string ca_file;
};

struct worker_stats {
  std::uint64_t received = 0;
  std::uint64_t succeeded = 0;
  std::uint64_t failed = 0;  ///< FAILURE stored (task errors, unknown tasks, bad arguments)
  std::uint64_t retried = 0;
  std::uint64_t revoked = 0;   ///< revoked or expired
  std::uint64_t rejected = 0;  ///< malformed messages dropped to the dead-letter list
  std::uint64_t restored = 0;  ///< unacked messages this worker put back
  std::uint64_t reconnects = 0;
};

/// Consumes `queues`, runs each task on the executor and stores its state. Delivery is at least
/// once: a message is acked only after its result is stored (acks late). On Redis it stays
/// recorded in `unacked` from the moment it is taken, so a worker killed at any point leaves it
/// to be restored (by itself when restarted under the same hostname, or by any Python worker
/// after the visibility timeout); on RabbitMQ it is an unacked delivery, which the broker gives
/// to another consumer once this worker's connection is gone.
///
/// What happens to a message: malformed (bad JSON, base64, body shape, content type, size) →
/// FAILURE with the reason where an id could be read, and the raw message pushed to
/// "<queue>.dead" (a Redis list, or a durable RabbitMQ queue); unknown name → FAILURE
/// NotRegistered; revoked or past `expires` → REVOKED; ETA in the future → held (on the
/// executor's timer, no worker) until due; else run. A task that throws `retry`, or fails while
/// its retry policy has attempts left, is sent again (same id, retries + 1, an ETA from the
/// backoff) and stored as RETRY; otherwise FAILURE with the exception as Python sees it
/// (to_remote_exception).
///
/// Events (worker-online/heartbeat/offline; task-received/started/succeeded/failed/retried/
/// revoked when task_events) and remote control (ping, stats, registered, active_queues, active,
/// reserved, scheduled, revoke, revoked, heartbeat, enable_events, disable_events, hello; any
/// other command gets Celery's "No such control command" error) follow Celery's formats.
class worker {
 public:
  /// Throws std::invalid_argument for an unusable option (URL, no queues, empty registry).
  worker(offload::executor& executor, const task_registry& tasks, worker_options options);
  /// Waits until the executor has run or dropped every call this worker gave it (a task still
  /// running past its hard time limit, which a C++ worker cannot kill, is waited for).
  ~worker();
  worker(const worker&) = delete;
  worker& operator=(const worker&) = delete;

  /// Serves until stop(): then stops consuming, finishes what is in hand (ETA tasks not yet due
  /// are put back in their queue), sends worker-offline and returns. Throws broker_error if the
  /// broker stays unreachable for reconnect_for (what is in hand stays unacked: restored later),
  /// broker_refused if it refuses the first set-up (credentials, vhost, a TLS certificate the
  /// CA file does not vouch for, a queue or key of another kind).
  void run();
  /// Async-signal-safe: asks run() to return.
  void stop() noexcept { m_stop.store(true, std::memory_order_relaxed); }
  worker_stats stats() const;
  const std::string& hostname() const noexcept;

 private:
  struct state;
  std::unique_ptr<state> m_state;
  std::atomic<bool> m_stop{false};
};

}  // namespace offload::broker::celery
