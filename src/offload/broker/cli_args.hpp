#pragma once

#include <initializer_list>
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
  /// Throws std::invalid_argument naming the first argument that is neither one of `with_value`
  /// (followed by its value) nor one of `flags`: a misspelt option is an error, not ignored.
  void allow_only(std::initializer_list<std::string_view> with_value,
                  std::initializer_list<std::string_view> flags = {}) const;

 private:
  std::vector<std::string> m_args;
};

}  // namespace offload::broker
