#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include <offload/broker/message.hpp>

namespace offload::broker {

/// One connection to a broker. Not thread-safe: use one per thread.
/// Every operation is bounded by the connect and I/O timeouts of its options and throws
/// broker_error (naming the broker and host:port) on failure; the next operation reconnects.
/// Delivery is at least once: a message received but not acked is delivered again after the
/// consumer's connection is lost (RabbitMQ) or its processing list is recovered (Redis).
class transport {
 public:
  virtual ~transport() = default;

  /// Makes sure `queue` and its dead-letter queue "<queue>.dead" exist.
  virtual void declare(const std::string& queue) = 0;
  /// A fresh queue for this caller's replies (exclusive to it where the broker supports that).
  virtual std::string make_reply_queue() = 0;
  /// Returns once the broker has the message (after its confirm, where confirms are on).
  virtual void publish(const std::string& queue, const message& m) = 0;
  /// Waits up to `timeout` for a message; zero polls. Nothing: none arrived in time.
  virtual std::optional<delivery> receive(const std::string& queue,
                                          std::chrono::milliseconds timeout) = 0;
  /// The message is done with: the broker forgets it.
  virtual void ack(const delivery& d) = 0;
  /// Moves the message to "<queue>.dead" with `reason`, then acks it.
  virtual void dead_letter(const delivery& d, std::string_view reason) = 0;
  /// Messages waiting in `queue` (not counting those received and not yet acked).
  virtual std::size_t length(const std::string& queue) = 0;
  /// "redis 127.0.0.1:6379" and so on, for messages.
  virtual std::string describe() const = 0;
};

/// Connection settings shared by both brokers.
struct endpoint {
  std::string host = "127.0.0.1";
  int port = 0;
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds io_timeout{5000};
};

}  // namespace offload::broker
