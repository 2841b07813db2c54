#pragma once

/// @file saturating_time.hpp
/// @brief Time arithmetic that saturates instead of overflowing: `now + d` for any duration d
/// (duration::max() included) is a time point no later than time_point::max(), never one that
/// wrapped into the past. Every due time the library computes goes through these.

#include <chrono>
#include <cstdint>
#include <limits>
#include <ratio>

namespace offload::detail {

/// `d` in the units of `To`, clamped to To's range (duration_cast would overflow, e.g. for
/// hours::max() in nanoseconds). Rounds toward zero, as duration_cast does.
template <class To, class Rep, class Period>
constexpr To saturating_cast(std::chrono::duration<Rep, Period> d) noexcept {
  using wide = std::chrono::duration<long double, typename To::period>;
  const long double v = std::chrono::duration_cast<wide>(d).count();
  constexpr auto hi = static_cast<long double>(std::numeric_limits<typename To::rep>::max());
  constexpr auto lo = static_cast<long double>(std::numeric_limits<typename To::rep>::min());
  if (!(v < hi))  // NaN or too large
    return To::max();
  if (!(v > lo))
    return To::min();
  return std::chrono::duration_cast<To>(d);
}

/// `t + d`, clamped to [time_point::min(), time_point::max()].
template <class Clock, class Dur, class Rep, class Period>
constexpr std::chrono::time_point<Clock, Dur> saturating_add(
    std::chrono::time_point<Clock, Dur> t, std::chrono::duration<Rep, Period> d) noexcept {
  using tp = std::chrono::time_point<Clock, Dur>;
  const Dur step = saturating_cast<Dur>(d);
  const Dur since = t.time_since_epoch();
  if (step > Dur::zero() && since > Dur::max() - step)
    return tp::max();
  if (step < Dur::zero() && since < Dur::min() - step)
    return tp::min();
  return t + step;
}

}  // namespace offload::detail
