#pragma once

/// @file
/// @brief The errors of offload::broker's connections to Redis and RabbitMQ.

#include <stdexcept>

namespace offload::broker {

/// Thrown when a broker cannot be reached, times out or refuses an operation. The text names
/// the broker and host:port.
class broker_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The broker answered one operation with an error (Redis: an error reply such as WRONGTYPE;
/// RabbitMQ: a channel or connection closed with a reply code such as 403 or 406): what was asked
/// is wrong, not the network, so trying again will not help. The text names the broker, the
/// operation and the error.
class broker_refused : public broker_error {
 public:
  using broker_error::broker_error;
};

}  // namespace offload::broker
