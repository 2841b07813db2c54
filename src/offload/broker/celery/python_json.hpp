#pragma once
/// @file
/// @brief JSON text as Python's json.dumps() writes it, which is what Celery and kombu send.

#include <string>

#include <nlohmann/json.hpp>

namespace offload::broker::celery {

/// The JSON values of Celery messages keep their members in the order they were written.
using json = nlohmann::ordered_json;

/// `value` as Python's `json.dumps(value)` writes it (kombu's and Celery's default): ", " between
/// elements, ": " after keys, every character outside printable ASCII escaped as \uXXXX
/// (surrogate pairs above U+FFFF), members in their stored order. Floats print as the shortest
/// text that reads back to the same double, as Python's repr() does; non-finite floats, which
/// Python writes as NaN/Infinity (not JSON), are written as null.
std::string dumps(const json& value);

}  // namespace offload::broker::celery
