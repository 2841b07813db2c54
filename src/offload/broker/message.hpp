#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

namespace offload::broker {

/// A task request or a reply, as it travels through a broker.
/// Requests: `task` names the task. Replies: `task` is "ok" (body = result) or "error"
/// (error = what failed). Dead letters keep the request and say why in `error`.
struct message {
  std::string task;             ///< task name ("noop", "spin_us", ...) or "ok" / "error" in replies
  std::string correlation_id;   ///< echoed in the reply so the caller can match it
  std::string reply_to;         ///< queue for the reply; empty: nobody waits for one
  std::string idempotency_key;  ///< stable across retries and redeliveries (at-least-once)
  unsigned attempt = 1;         ///< 1 for the first execution
  std::string body;             ///< payload (task argument or result)
  std::string error;            ///< error replies and dead letters: the reason
};

/// A received message. `msg` is empty when the bytes could not be decoded; `malformed` says why.
struct delivery {
  std::string queue;             ///< the queue it came from
  std::optional<message> msg;    ///< decoded message, or nothing if malformed
  std::string malformed;         ///< why decoding failed (empty if msg is set)
  std::string raw;               ///< the bytes as received (Redis element; RabbitMQ body)
  std::uint64_t tag = 0;         ///< RabbitMQ delivery tag
  std::uint64_t generation = 0;  ///< connection generation: acks of an older one are dropped
  bool redelivered = false;      ///< RabbitMQ: the broker delivered it before
};

/// Thrown when a broker cannot be reached, times out or refuses an operation. The text names
/// the broker and host:port.
class broker_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The broker answered one command with an error (Redis: an error reply such as WRONGTYPE): the
/// connection is fine and other commands still work, so this is about the command's data (a key
/// of another type, say), not a lost broker. The text names the broker, the command and the error.
class broker_refused : public broker_error {
 public:
  using broker_error::broker_error;
};

}  // namespace offload::broker
