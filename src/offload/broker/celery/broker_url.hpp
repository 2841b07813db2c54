#pragma once

/// @file
/// @brief Celery's broker and result-backend URLs: `redis://[:password@]host[:port][/db]`,
/// `amqp://[user[:password]@]host[:port][/vhost]` (`amqps://` for TLS) and `rpc://`.

#include <string>
#include <string_view>

namespace offload::broker::celery {

struct broker_url {
  enum class kind { redis, amqp, rpc };
  kind scheme = kind::redis;
  std::string host = "127.0.0.1";
  int port = 0;  ///< 6379 (redis), 5672 (amqp) or 5671 (amqps) when the URL gives none
  int db = 0;    ///< redis: the database number
  std::string user;
  std::string password;
  std::string vhost = "/";  ///< amqp: `amqp://h//` and `amqp://h` are "/", `amqp://h/v` is "v"
  bool tls = false;         ///< amqps://

  /// The URL without its password, for messages and logs.
  std::string redacted() const;
};

/// Reads a URL as Celery does (percent-escapes in user, password and vhost decoded). Throws
/// std::invalid_argument quoting the URL (password hidden) and naming the part that is wrong.
broker_url parse_broker_url(std::string_view text);

/// A broker and its result backend as Celery pairs them: an empty `backend` is the broker's own
/// (Redis) or rpc:// (AMQP). Throws std::invalid_argument for rpc:// as a broker, an amqp://
/// backend (Celery's deprecated one: use rpc:// or redis://) or rpc:// without an amqp:// broker.
struct celery_endpoints {
  broker_url broker;
  broker_url backend;
};
celery_endpoints parse_celery_endpoints(std::string_view broker, std::string_view backend);

}  // namespace offload::broker::celery
