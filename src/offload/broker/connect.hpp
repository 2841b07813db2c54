#pragma once

#include <memory>
#include <string>

#include <offload/broker/transport.hpp>

namespace offload::broker {

/// Everything needed to open a transport, as given on a command line.
struct connect_options {
  std::string broker;  ///< "redis" or "rabbitmq"
  endpoint where;
  bool reliable = false;  ///< redis: BLMOVE into a processing list
  std::string consumer_id = "worker";
  bool persistent = false;         ///< rabbitmq: delivery mode 2
  bool confirms = false;           ///< rabbitmq: publisher confirms
  unsigned prefetch = 0;           ///< rabbitmq: basic.qos
  std::string vhost = "/";         ///< rabbitmq
  std::string user = "guest";      ///< rabbitmq; guest may log in from loopback only
  std::string password = "guest";  ///< rabbitmq
};

/// Opens the transport; throws broker_error if it cannot connect, std::invalid_argument for an
/// unknown broker name.
std::unique_ptr<transport> open_transport(const connect_options& o);

}  // namespace offload::broker
