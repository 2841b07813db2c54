#include <cstdio>
#include <stdexcept>

#include <offload/broker/celery/iso8601.hpp>

namespace offload::broker::celery {
namespace {

[[noreturn]] void bad(std::string_view text, const char* what) {
  throw std::invalid_argument("time '" + std::string(text) + "' is not ISO 8601: " + what);
}

/// `n` decimal digits at `pos`, or -1.
int digits(std::string_view s, std::size_t pos, std::size_t n) {
  if (pos + n > s.size())
    return -1;
  int v = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

bool at(std::string_view s, std::size_t pos, char c) {
  return pos < s.size() && s[pos] == c;
}

}  // namespace

wall_time parse_iso8601(std::string_view s) {
  using namespace std::chrono;
  const int y = digits(s, 0, 4);
  const int mo = digits(s, 5, 2);
  const int d = digits(s, 8, 2);
  if (y < 0 || mo < 0 || d < 0 || !at(s, 4, '-') || !at(s, 7, '-'))
    bad(s, "the date is not YYYY-MM-DD");
  if (!at(s, 10, 'T') && !at(s, 10, ' '))
    bad(s, "no 'T' after the date");
  const int h = digits(s, 11, 2);
  const int mi = digits(s, 14, 2);
  const int sec = digits(s, 17, 2);
  if (h < 0 || mi < 0 || sec < 0 || !at(s, 13, ':') || !at(s, 16, ':'))
    bad(s, "the time is not HH:MM:SS");
  const year_month_day ymd{
      year{y}, month{static_cast<unsigned>(mo)}, day{static_cast<unsigned>(d)}};
  if (!ymd.ok() || y < 1)
    bad(s, "no such date");
  if (h > 23 || mi > 59 || sec > 59)
    bad(s, "hour, minute or second out of range");
  std::size_t pos = 19;
  long micros = 0;
  if (at(s, pos, '.')) {
    ++pos;
    int n = 0;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      if (n < 6) {
        micros = micros * 10 + (s[pos] - '0');
        ++n;
      }
      ++pos;
    }
    if (n == 0)
      bad(s, "no digits after '.'");
    for (; n < 6; ++n) micros *= 10;
  }
  minutes offset{0};
  if (at(s, pos, 'Z')) {
    ++pos;
  } else if (at(s, pos, '+') || at(s, pos, '-')) {
    const bool minus = s[pos] == '-';
    const int oh = digits(s, pos + 1, 2);
    const int om = digits(s, pos + 4, 2);
    if (oh < 0 || om < 0 || !at(s, pos + 3, ':') || oh > 23 || om > 59)
      bad(s, "the offset is not ±HH:MM");
    offset = hours{oh} + minutes{om};
    if (minus)
      offset = -offset;
    pos += 6;
  }
  if (pos != s.size())
    bad(s, "text after the time");
  const auto local = sys_days{ymd} + hours{h} + minutes{mi} + seconds{sec} + microseconds{micros};
  return wall_time{local - offset};
}

namespace {

std::string format(wall_time t, bool offset) {
  using namespace std::chrono;
  const auto day_start = floor<days>(t);
  const year_month_day ymd{day_start};
  auto rest = t - day_start;
  const auto h = duration_cast<hours>(rest);
  rest -= h;
  const auto m = duration_cast<minutes>(rest);
  rest -= m;
  const auto s = duration_cast<seconds>(rest);
  rest -= s;
  const long long us = rest.count();
  char buf[64];
  int n = std::snprintf(buf,
                        sizeof buf,
                        "%04d-%02u-%02uT%02d:%02d:%02lld",
                        int(ymd.year()),
                        unsigned(ymd.month()),
                        unsigned(ymd.day()),
                        int(h.count()),
                        int(m.count()),
                        static_cast<long long>(s.count()));
  std::string out(buf, static_cast<std::size_t>(n));
  if (us != 0) {
    n = std::snprintf(buf, sizeof buf, ".%06lld", us);
    out.append(buf, static_cast<std::size_t>(n));
  }
  if (offset)
    out += "+00:00";
  return out;
}

}  // namespace

std::string format_iso8601_utc(wall_time t) {
  return format(t, true);
}
std::string format_iso8601_naive(wall_time t) {
  return format(t, false);
}

}  // namespace offload::broker::celery
