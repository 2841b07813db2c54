#include <random>

#include <offload/broker/rpc_client.hpp>

namespace offload::broker {

rpc_client::rpc_client(transport& t, std::string queue) : m_t(t), m_queue(std::move(queue)) {
  m_t.declare(m_queue);
  m_reply_queue = m_t.make_reply_queue();
  std::random_device rd;
  m_prefix = std::to_string(rd()) + "-";
}

std::string rpc_client::send(const std::string& task, const std::string& body) {
  message m;
  m.task = task;
  m.correlation_id = m_prefix + std::to_string(++m_next);
  m.idempotency_key = m.correlation_id;
  m.reply_to = m_reply_queue;
  m.body = body;
  m_t.publish(m_queue, m);
  return m.correlation_id;
}

std::optional<message> rpc_client::next_reply(std::chrono::milliseconds timeout) {
  std::optional<delivery> d = m_t.receive(m_reply_queue, timeout);
  if (!d) {
    return std::nullopt;
  }
  m_t.ack(*d);
  if (!d->msg) {
    throw broker_error(m_t.describe() + ": malformed reply: " + d->malformed);
  }
  return std::move(d->msg);
}

message rpc_client::call(const std::string& task,
                         const std::string& body,
                         std::chrono::milliseconds timeout) {
  const std::string id = send(task, body);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      throw broker_error(m_t.describe() + ": no reply to " + task + " " + id + " within " +
                         std::to_string(timeout.count()) + " ms");
    }
    if (std::optional<message> r = next_reply(left); r && r->correlation_id == id) {
      return std::move(*r);
    }
  }
}

}  // namespace offload::broker
