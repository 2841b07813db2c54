#pragma once

/// @file
/// @brief One AMQP 0-9-1 connection to RabbitMQ (rabbitmq-c) as Celery uses it: declarations
/// that never clash with a Python worker's, publishes with Celery's properties and headers table,
/// consumers with manual acks, and deliveries read without blocking. Not thread-safe: one thread
/// owns it.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <offload/broker/broker_error.hpp>
#include <offload/broker/celery/broker_url.hpp>
#include <offload/broker/celery/python_json.hpp>
#include <offload/broker/celery/task_message.hpp>

namespace offload::broker::celery {

struct amqp_connection_options {
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds io_timeout{5000};  ///< every synchronous method (declare, qos, …)
  /// AMQP heartbeat asked of the broker; 0: none. The connection must be read (next()) more
  /// often than this, or the broker closes it.
  std::chrono::seconds heartbeat{60};
  /// amqps:// only: the CA bundle the broker's certificate must chain to (and its host name
  /// match); empty: the certificate is not verified (the link is still encrypted).
  std::string ca_file;
};

/// The basic properties Celery reads and writes. `headers` is the AMQP headers table as JSON.
struct amqp_properties {
  std::string content_type = "application/json";
  std::string content_encoding = "utf-8";
  std::string correlation_id;  ///< empty: not sent
  std::string reply_to;        ///< empty: not sent
  int delivery_mode = 2;       ///< 1 transient, 2 persistent
  int priority = 0;
  json headers = json::object();
};

/// A delivery of basic.consume: what decode_amqp() needs, the body and the tag to ack.
struct amqp_message {
  amqp_delivery delivery;  ///< delivery.delivery_tag is `tag` as text
  std::string body;
  std::uint64_t tag = 0;
  std::string consumer_tag;  ///< the consumer it came to
  std::string queue;         ///< that consumer's queue (set by whoever made the consumer)
};

class amqp_connection {
 public:
  /// Connects, logs in and opens the channels. `url` is amqp:// or amqps://. Throws
  /// broker_error naming the broker (host:port, vhost) and what failed.
  amqp_connection(const broker_url& url, amqp_connection_options options = {});
  ~amqp_connection();
  amqp_connection(const amqp_connection&) = delete;
  amqp_connection& operator=(const amqp_connection&) = delete;

  /// Declares the exchange unless it exists (a passive declare first): whatever arguments a
  /// Python worker declared it with stay, so there is never a 406 PRECONDITION_FAILED.
  void ensure_exchange(std::string_view name,
                       std::string_view type,
                       bool durable,
                       bool auto_delete);
  /// The same for a queue; `arguments` (a JSON object: x-max-priority, x-expires, …) only
  /// apply when this declares it. Returns the queue's message count.
  std::uint32_t ensure_queue(std::string_view name,
                             bool durable,
                             bool auto_delete,
                             const json& arguments = json::object());
  void bind(std::string_view queue, std::string_view exchange, std::string_view routing_key);
  /// basic.qos on the consuming channel: at most `prefetch` unacked deliveries on it, all its
  /// consumers together (global, as Celery sets it on RabbitMQ, so a change applies at once).
  void qos(std::uint16_t prefetch);
  /// basic.consume on `queue`; returns the consumer tag.
  std::string consume(std::string_view queue, bool no_ack);
  void cancel(std::string_view consumer_tag);

  void publish(std::string_view exchange,
               std::string_view routing_key,
               const amqp_properties& properties,
               std::string_view body);
  void ack(std::uint64_t tag);
  void reject(std::uint64_t tag, bool requeue);

  /// The next delivery if one has arrived, without waiting (heartbeats are sent and checked
  /// here). Throws broker_error when the broker closed the channel or connection, or it is lost.
  std::optional<amqp_message> next();
  /// Frames already read and buffered: next() may return one without the socket being readable.
  bool buffered() const;
  int fd() const;
  /// "amqp host:port/vhost", for messages.
  const std::string& describe() const noexcept { return m_describe; }

 private:
  struct state;
  [[noreturn]] void fail(const std::string& what);
  void check(const char* what);
  /// A passive declare on the probe channel: true if it exists. A 404 closes that channel
  /// only; it is opened again.
  bool exists(bool queue, std::string_view name, std::uint32_t* message_count = nullptr);

  std::unique_ptr<state> m_state;
  std::string m_describe;
};

}  // namespace offload::broker::celery
