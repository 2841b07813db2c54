#pragma once
/// @file
/// @brief A Celery task message (protocol 2, and protocol 1 on input) and its two wire forms:
/// kombu's Redis envelope and an AMQP message's properties, headers table and body.
///
/// The contract is the one in docs/brokers.md's "Wire format" section, verified against Celery
/// 5.2.6 / kombu 5.2.4: headers `task` and `id` and a 3-element body `[args, kwargs, embed]` in
/// `application/json` are the minimum; every other header may be absent or null; unknown headers
/// are kept, not refused.

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <offload/broker/celery/python_json.hpp>

namespace offload::broker::celery {

/// A message that is not a Celery task message. what() names the field and what is wrong, e.g.
/// "body has 2 elements, expected 3 ([args, kwargs, embed])". `task_id` is the message's id when
/// one could be read (so that a FAILURE can be stored for it), else empty.
class malformed_message : public std::invalid_argument {
 public:
  malformed_message(const std::string& what, std::string task_id)
      : std::invalid_argument(what), m_task_id(std::move(task_id)) {}
  const std::string& task_id() const noexcept { return m_task_id; }

 private:
  std::string m_task_id;
};

struct task_message {
  int protocol = 2;  ///< 2, or 1 for a message whose fields are all in the body
  // Headers (protocol 2), in the order Celery writes them.
  std::string lang = "py";
  std::string task;  ///< the registered name, e.g. "tasks.add"
  std::string id;    ///< the task id (UUID text)
  std::optional<std::string> shadow;
  std::optional<std::string> eta;      ///< ISO 8601 as sent (parse_iso8601() has checked it)
  std::optional<std::string> expires;  ///< ISO 8601 as sent
  std::optional<std::string> group;
  std::optional<std::int64_t> group_index;
  std::int64_t retries = 0;               ///< attempts before this one
  std::optional<double> time_limit_hard;  ///< seconds: `timelimit[0]` (hard first on the wire)
  std::optional<double> time_limit_soft;  ///< seconds: `timelimit[1]`
  std::optional<std::string> root_id;
  std::optional<std::string> parent_id;
  std::optional<std::string> argsrepr;
  std::optional<std::string> kwargsrepr;
  std::optional<std::string> origin;
  bool ignore_result = false;
  json extra_headers = json::object();  ///< every other header, kept in order
  // Body.
  json args = json::array();
  json kwargs = json::object();
  json callbacks;  ///< null or a list of signatures
  json errbacks;
  json chain;
  json chord;
  // Properties.
  std::string content_type = "application/json";
  std::string content_encoding = "utf-8";
  std::string correlation_id;  ///< the task id when the producer sent none
  std::optional<std::string> reply_to;
  json extra_properties = json::object();  ///< other properties (a retry's "origin", ...), in order
  int delivery_mode = 2;
  std::optional<std::string> expiration;  ///< milliseconds as text, when `expires` was given
  int priority = 0;
  std::string delivery_tag;  ///< Redis: kombu's UUID; AMQP: the channel's tag as decimal text
  std::string exchange;      ///< delivery_info.exchange ("" for the default exchange)
  std::string routing_key = "celery";
  bool redelivered = false;
};

/// Input limits: a message larger than `max_bytes` is refused before it is parsed.
struct decode_limits {
  std::size_t max_bytes = std::size_t{16} << 20;
};

/// A Redis list element as kombu writes it: {"body", "content-encoding", "content-type",
/// "headers", "properties"}, the body base64 when properties.body_encoding is "base64".
/// Throws malformed_message.
task_message decode_redis_envelope(std::string_view text, const decode_limits& limits = {});

/// The parts of an AMQP delivery a task message needs (filled by the RabbitMQ transport).
struct amqp_delivery {
  std::optional<std::string> content_type;
  std::optional<std::string> content_encoding;
  json headers = json::object();  ///< the AMQP headers table as JSON
  std::optional<std::string> correlation_id;
  std::optional<std::string> reply_to;
  int priority = 0;
  int delivery_mode = 2;
  std::string delivery_tag;
  std::string exchange;
  std::string routing_key;
  bool redelivered = false;
};

/// Throws malformed_message.
task_message decode_amqp(const amqp_delivery& delivery,
                         std::string_view body,
                         const decode_limits& limits = {});

/// The JSON of the headers Celery sends (protocol 2), in Celery's order, then extra_headers.
json encode_headers(const task_message& m);

/// The body text: `[args, kwargs, {"callbacks", "errbacks", "chain", "chord"}]` as json.dumps.
std::string encode_body(const task_message& m);

/// A Redis list element, byte for byte as kombu writes it (body base64-encoded).
std::string encode_redis_envelope(const task_message& m);

/// The Redis list a message of `priority` goes to in `queue` (kombu's four buckets, 0 first):
/// `queue`, `queue\x06\x163`, `queue\x06\x166` or `queue\x06\x169`.
std::string redis_priority_list(std::string_view queue, int priority);

}  // namespace offload::broker::celery
