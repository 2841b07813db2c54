#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace offload::broker {

/// A small "--name value" / "--flag" parser shared by the examples and the benchmark drivers.
class cli_args {
 public:
  cli_args(int argc, char** argv) : m_args(argv + 1, argv + argc) {}
  /// The value after --name, or `fallback`; throws std::invalid_argument if --name is last.
  std::string value(std::string_view name, std::string fallback = "") const;
  long number(std::string_view name, long fallback) const;
  bool flag(std::string_view name) const;

 private:
  std::vector<std::string> m_args;
};

}  // namespace offload::broker
