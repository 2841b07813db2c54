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

void cli_args::allow_only(std::initializer_list<std::string_view> with_value,
                          std::initializer_list<std::string_view> flags) const {
  const auto in = [](std::initializer_list<std::string_view> names, const std::string& a) {
    return std::find(names.begin(), names.end(), a) != names.end();
  };
  for (std::size_t i = 0; i < m_args.size(); ++i) {
    if (in(with_value, m_args[i])) {
      ++i;  // its value (value() reports a missing one)
      continue;
    }
    if (!in(flags, m_args[i]))
      throw std::invalid_argument("unknown argument '" + m_args[i] + "'");
  }
}

}  // namespace offload::broker
