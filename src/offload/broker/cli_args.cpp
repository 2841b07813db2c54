#include <algorithm>
#include <cstdlib>
#include <stdexcept>

#include <offload/broker/cli_args.hpp>

namespace offload::broker {

std::string cli_args::value(std::string_view name, std::string fallback) const {
  auto it = std::find(m_args.begin(), m_args.end(), name);
  if (it == m_args.end()) {
    return fallback;
  }
  if (std::next(it) == m_args.end()) {
    throw std::invalid_argument(std::string(name) + " needs a value");
  }
  return *std::next(it);
}

long cli_args::number(std::string_view name, long fallback) const {
  const std::string v = value(name);
  if (v.empty()) {
    return fallback;
  }
  std::size_t used = 0;
  long n = std::stol(v, &used);
  if (used != v.size()) {
    throw std::invalid_argument(std::string(name) + ": not a number: " + v);
  }
  return n;
}

bool cli_args::flag(std::string_view name) const {
  return std::find(m_args.begin(), m_args.end(), name) != m_args.end();
}

connect_options cli_args::connection() const {
  connect_options o;
  o.broker = value("--broker");
  o.where.host = value("--host", "127.0.0.1");
  o.where.port = static_cast<int>(number("--port", 0));
  o.where.connect_timeout = std::chrono::milliseconds(number("--connect-timeout-ms", 2000));
  o.where.io_timeout = std::chrono::milliseconds(number("--io-timeout-ms", 5000));
  o.reliable = flag("--reliable");
  o.consumer_id = value("--consumer-id", "worker");
  o.persistent = flag("--persistent");
  o.confirms = flag("--confirms");
  o.prefetch = static_cast<unsigned>(number("--prefetch", 0));
  o.vhost = value("--vhost", "/");
  o.user = value("--user", "guest");
  if (const char* pw = std::getenv("OFFLOAD_BROKER_PASSWORD"); pw != nullptr) {
    o.password = pw;
  }
  if (o.broker.empty() || o.where.port <= 0) {
    throw std::invalid_argument("--broker redis|rabbitmq and --port are required");
  }
  if (o.broker != "redis" && o.broker != "rabbitmq") {
    throw std::invalid_argument("--broker must be redis or rabbitmq, got '" + o.broker + "'");
  }
  return o;
}

}  // namespace offload::broker
