#pragma once

/// @file
/// @brief Random (version 4) UUIDs as text, as Celery uses them for task ids, delivery tags and
/// tickets.

#include <string>

namespace offload::broker::celery {

/// "0b1e6c2a-5d0e-4e7f-9a3b-2c4d5e6f7a8b": 122 random bits from a per-thread generator seeded
/// by std::random_device.
std::string uuid4();

}  // namespace offload::broker::celery
