#include <algorithm>
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

}  // namespace offload::broker
