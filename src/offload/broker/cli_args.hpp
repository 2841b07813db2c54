#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <offload/broker/connect.hpp>

namespace offload::broker {

/// A small "--name value" / "--flag" parser shared by the worker and the benchmark driver.
class cli_args {
 public:
  cli_args(int argc, char** argv) : m_args(argv + 1, argv + argc) {}
  /// The value after --name, or `fallback`; throws std::invalid_argument if --name is last.
  std::string value(std::string_view name, std::string fallback = "") const;
  long number(std::string_view name, long fallback) const;
  bool flag(std::string_view name) const;
  /// Broker options: --broker --host --port --connect-timeout-ms --io-timeout-ms --reliable
  /// --consumer-id --persistent --confirms --prefetch --vhost --user; the RabbitMQ password comes
  /// from the environment variable OFFLOAD_BROKER_PASSWORD (default "guest"), never argv.
  connect_options connection() const;

 private:
  std::vector<std::string> m_args;
};

}  // namespace offload::broker
