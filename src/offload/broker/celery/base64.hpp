#pragma once
/// @file
/// @brief Standard base64 (RFC 4648, with padding), as kombu encodes Redis message bodies.

#include <string>
#include <string_view>

namespace offload::broker::celery {

std::string base64_encode(std::string_view bytes);

/// Throws std::invalid_argument naming the offset of the first byte that is not base64, or the
/// length when it is not a multiple of 4. Whitespace is not accepted (kombu writes none).
std::string base64_decode(std::string_view text);

}  // namespace offload::broker::celery
