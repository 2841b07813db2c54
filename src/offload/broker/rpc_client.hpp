#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include <offload/broker/transport.hpp>

namespace offload::broker {

/// The calling side: publishes named tasks to a queue with a reply queue of its own, and reads
/// the replies (acking them). Uses the transport from one thread.
class rpc_client {
 public:
  /// Declares `queue` and creates the reply queue.
  rpc_client(transport& t, std::string queue);

  /// Publishes a task; returns its correlation id (also its idempotency key).
  std::string send(const std::string& task, const std::string& body);
  /// The next reply, or nothing within `timeout`. Replies carry task "ok" or "error".
  std::optional<message> next_reply(std::chrono::milliseconds timeout);
  /// send() then wait for the reply with that correlation id (others are dropped).
  /// Throws broker_error if none arrives within `timeout`.
  message call(const std::string& task, const std::string& body, std::chrono::milliseconds timeout);

  const std::string& reply_queue() const { return m_reply_queue; }

 private:
  transport& m_t;
  std::string m_queue;
  std::string m_reply_queue;
  std::string m_prefix;
  std::uint64_t m_next = 0;
};

}  // namespace offload::broker
