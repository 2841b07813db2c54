#pragma once

#include <string>
#include <string_view>

#include <offload/broker/message.hpp>

namespace offload::broker {

/// Byte encoding of a message for brokers without message properties (Redis lists):
/// "OFL1" then netstrings ("<len>:<bytes>,") for task, correlation_id, reply_to, idempotency_key,
/// attempt, body, error. decode() throws std::invalid_argument saying what is wrong.
std::string encode(const message& m);
message decode(std::string_view bytes);

}  // namespace offload::broker
