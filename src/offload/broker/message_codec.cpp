#include <charconv>
#include <stdexcept>

#include <offload/broker/message_codec.hpp>

namespace offload::broker {
namespace {

constexpr std::string_view k_magic = "OFL1";

void put(std::string& out, std::string_view field) {
  out += std::to_string(field.size());
  out += ':';
  out += field;
  out += ',';
}

std::string_view take(std::string_view& in, const char* name) {
  std::size_t len = 0;
  const char* end = in.data() + in.size();
  auto [p, ec] = std::from_chars(in.data(), end, len);
  if (ec != std::errc{} || p == end || *p != ':') {
    throw std::invalid_argument(std::string("bad length of field '") + name + "'");
  }
  const auto head = static_cast<std::size_t>(p - in.data()) + 1;
  if (in.size() - head < len + 1 || in[head + len] != ',') {
    throw std::invalid_argument(std::string("field '") + name + "' truncated");
  }
  std::string_view field = in.substr(head, len);
  in.remove_prefix(head + len + 1);
  return field;
}

}  // namespace

std::string encode(const message& m) {
  std::string out(k_magic);
  out.reserve(64 + m.task.size() + m.correlation_id.size() + m.reply_to.size() +
              m.idempotency_key.size() + m.body.size() + m.error.size());
  put(out, m.task);
  put(out, m.correlation_id);
  put(out, m.reply_to);
  put(out, m.idempotency_key);
  put(out, std::to_string(m.attempt));
  put(out, m.body);
  put(out, m.error);
  return out;
}

message decode(std::string_view in) {
  if (in.substr(0, k_magic.size()) != k_magic) {
    throw std::invalid_argument("not an offload message (no OFL1 header)");
  }
  in.remove_prefix(k_magic.size());
  message m;
  m.task = take(in, "task");
  m.correlation_id = take(in, "correlation_id");
  m.reply_to = take(in, "reply_to");
  m.idempotency_key = take(in, "idempotency_key");
  std::string_view attempt = take(in, "attempt");
  auto [p, ec] = std::from_chars(attempt.data(), attempt.data() + attempt.size(), m.attempt);
  if (ec != std::errc{} || p != attempt.data() + attempt.size() || m.attempt == 0) {
    throw std::invalid_argument("bad attempt number");
  }
  m.body = take(in, "body");
  m.error = take(in, "error");
  if (!in.empty()) {
    throw std::invalid_argument("trailing bytes after the last field");
  }
  if (m.task.empty()) {
    throw std::invalid_argument("no task name");
  }
  return m;
}

}  // namespace offload::broker
