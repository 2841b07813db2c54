#pragma once
/// @file
/// @brief The ISO 8601 times of Celery messages (`eta`, `expires`) and results (`date_done`).

#include <chrono>
#include <string>
#include <string_view>

namespace offload::broker::celery {

using wall_time = std::chrono::time_point<std::chrono::system_clock, std::chrono::microseconds>;

/// The system clock now, at the microseconds Celery's times carry.
inline wall_time wall_now() {
  return std::chrono::time_point_cast<std::chrono::microseconds>(std::chrono::system_clock::now());
}

/// Reads `YYYY-MM-DDTHH:MM:SS[.f{1,6}][Z|±HH:MM]`, the forms Python's isoformat() writes and
/// Celery accepts. A time without an offset is read as UTC (pitfall 8 of the protocol notes:
/// Celery reads it in the worker's zone; offload's workers take UTC). Throws
/// std::invalid_argument quoting the text and saying which part is wrong.
wall_time parse_iso8601(std::string_view text);

/// As Python's `datetime.isoformat()` of an aware UTC time: `2026-12-02T05:42:04.677820+00:00`
/// (no fraction when the microseconds are 0). What a producer sends as `eta`/`expires`.
std::string format_iso8601_utc(wall_time t);

/// As `datetime.utcnow().isoformat()`: the same without the offset (`date_done`).
std::string format_iso8601_naive(wall_time t);

}  // namespace offload::broker::celery
