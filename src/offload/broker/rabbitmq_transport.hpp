#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <string>

#include <offload/broker/transport.hpp>

namespace offload::broker {

struct rabbitmq_options {
  endpoint where;
  std::string vhost = "/";
  std::string user = "guest";  ///< RabbitMQ lets guest in from loopback only
  std::string password = "guest";
  bool persistent = false;     ///< delivery mode 2: messages survive a broker restart
  bool confirms = false;       ///< publisher confirms: publish() waits for the broker's ack
  std::uint16_t prefetch = 0;  ///< basic.qos: unacked deliveries at once; 0 = unlimited
};

/// RabbitMQ through rabbitmq-c, on channel 1. Task queues are durable, with dead-letter exchange
/// "offload.dlx" routing to "<queue>.dead", so messages the broker rejects land there too.
/// Message fields travel as AMQP properties: type = task, correlation_id, reply_to,
/// message_id = idempotency key, headers x-attempt and x-error; the body is the payload.
class rabbitmq_transport final : public transport {
 public:
  explicit rabbitmq_transport(rabbitmq_options opts);  ///< connects now; throws broker_error
  ~rabbitmq_transport() override;
  rabbitmq_transport(const rabbitmq_transport&) = delete;
  rabbitmq_transport& operator=(const rabbitmq_transport&) = delete;

  void declare(const std::string& queue) override;
  std::string make_reply_queue() override;
  void publish(const std::string& queue, const message& m) override;
  std::optional<delivery> receive(const std::string& queue,
                                  std::chrono::milliseconds timeout) override;
  void ack(const delivery& d) override;
  void dead_letter(const delivery& d, std::string_view reason) override;
  std::size_t length(const std::string& queue) override;
  std::string describe() const override;

 private:
  struct state;  // the rabbitmq-c connection; kept out of this header

  void connect();
  void disconnect() noexcept;
  void ensure_connected();
  [[noreturn]] void fail(const std::string& what);
  void check_rpc(const char* what);
  void publish_to(const std::string& exchange, const std::string& key, const message& m);
  /// Reads one frame within `timeout`: queues deliveries, records confirms. False: timed out.
  bool pump(std::chrono::milliseconds timeout);
  void start_consuming(const std::string& queue);

  rabbitmq_options m_opts;
  state* m_state = nullptr;
  std::uint64_t m_generation = 0;
  std::uint64_t m_published = 0;  // publish sequence numbers (confirm mode)
  std::uint64_t m_confirmed = 0;
  std::map<std::string, std::string> m_consumer_queue;  // consumer tag -> queue
  std::map<std::string, bool> m_consuming;              // queue -> consumer started
  std::deque<delivery> m_pending;                       // received, not yet handed out
};

}  // namespace offload::broker
