#pragma once

#include <stdexcept>
#include <string>

#include <offload/broker/message.hpp>

namespace offload::broker {

/// The task was named but no such task exists: not worth retrying.
class unknown_task : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// Runs the named task on the calling thread and returns its result. Tasks:
///   noop      returns "ok" at once
///   spin_us   body starts with a decimal count of microseconds: burns that much CPU, returns "ok"
///   echo      returns the body
///   fail      throws std::runtime_error (for retry and dead-letter tests)
/// Throws unknown_task for any other name, std::invalid_argument for a bad argument.
std::string run_task(const message& m);

}  // namespace offload::broker
