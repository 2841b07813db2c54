#include <charconv>
#include <stdexcept>

#include <offload/broker/celery/broker_url.hpp>

namespace offload::broker::celery {
namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

std::string percent_decode(std::string_view s, const std::string& quoted) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    const int hi = i + 2 < s.size() ? hex_digit(s[i + 1]) : -1;
    const int lo = i + 2 < s.size() ? hex_digit(s[i + 2]) : -1;
    if (hi < 0 || lo < 0)
      throw std::invalid_argument("broker URL " + quoted +
                                  ": a '%' not followed by two hex digits");
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

int parse_number(std::string_view s, const char* what, int lo, int hi, const std::string& quoted) {
  int v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || v < lo || v > hi)
    throw std::invalid_argument("broker URL " + quoted + ": " + what + " must be a number in [" +
                                std::to_string(lo) + ", " + std::to_string(hi) + "], got '" +
                                std::string(s) + "'");
  return v;
}

}  // namespace

std::string broker_url::redacted() const {
  switch (scheme) {
    case kind::rpc:
      return "rpc://";
    case kind::redis:
      return "redis://" + host + ":" + std::to_string(port) + "/" + std::to_string(db);
    case kind::amqp:
      return std::string(tls ? "amqps://" : "amqp://") + (user.empty() ? "" : user + "@") + host +
             ":" + std::to_string(port) + "/" + (vhost == "/" ? "/" : vhost);
  }
  return {};
}

broker_url parse_broker_url(std::string_view text) {
  broker_url u;
  const std::size_t scheme_end = text.find("://");
  // The quoted URL never shows a password: everything between "://" and '@' is dropped.
  std::string quoted(1, '\'');
  if (const std::size_t at = text.rfind('@');
      scheme_end != std::string_view::npos && at != std::string_view::npos && at > scheme_end) {
    quoted += text.substr(0, scheme_end + 3);
    quoted += "***";
    quoted += text.substr(at);
  } else {
    quoted += text;
  }
  quoted += '\'';
  if (scheme_end == std::string_view::npos)
    throw std::invalid_argument("broker URL " + quoted +
                                ": expected redis://, amqp:// or rpc:// at the start");
  const std::string_view scheme = text.substr(0, scheme_end);
  std::string_view rest = text.substr(scheme_end + 3);
  if (scheme == "rpc") {
    u.scheme = broker_url::kind::rpc;
    return u;
  }
  if (scheme == "redis") {
    u.scheme = broker_url::kind::redis;
    u.port = 6379;
  } else if (scheme == "amqp" || scheme == "pyamqp" || scheme == "amqps") {
    u.scheme = broker_url::kind::amqp;
    u.tls = scheme == "amqps";
    u.port = u.tls ? 5671 : 5672;
    u.user = "guest";
    u.password = "guest";
  } else {
    throw std::invalid_argument("broker URL " + quoted + ": scheme '" + std::string(scheme) +
                                "' is not redis, amqp, amqps or rpc");
  }
  std::string_view path;
  if (const std::size_t slash = rest.find('/'); slash != std::string_view::npos) {
    path = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
  }
  if (const std::size_t at = rest.rfind('@'); at != std::string_view::npos) {
    const std::string_view cred = rest.substr(0, at);
    rest = rest.substr(at + 1);
    const std::size_t colon = cred.find(':');
    const std::string user = percent_decode(cred.substr(0, colon), quoted);
    if (!user.empty() || u.scheme == broker_url::kind::redis)
      u.user = user;
    if (colon != std::string_view::npos)
      u.password = percent_decode(cred.substr(colon + 1), quoted);
  }
  if (const std::size_t colon = rest.rfind(':'); colon != std::string_view::npos) {
    u.port = parse_number(rest.substr(colon + 1), "the port", 1, 65535, quoted);
    rest = rest.substr(0, colon);
  }
  if (!rest.empty())
    u.host = std::string(rest);
  // One address: loopback servers here listen on IPv4. Kept for TLS: the certificate names it.
  if (u.host == "localhost" && !u.tls)
    u.host = "127.0.0.1";
  if (u.scheme == broker_url::kind::redis) {
    if (!path.empty())
      u.db = parse_number(path, "the database", 0, 1 << 20, quoted);
  } else {
    u.vhost = path.empty() ? "/" : percent_decode(path, quoted);
  }
  return u;
}

celery_endpoints parse_celery_endpoints(std::string_view broker, std::string_view backend) {
  celery_endpoints e;
  e.broker = parse_broker_url(broker);
  if (e.broker.scheme == broker_url::kind::rpc)
    throw std::invalid_argument("rpc:// is a result backend, not a broker");
  const bool amqp = e.broker.scheme == broker_url::kind::amqp;
  if (backend.empty())
    e.backend = amqp ? parse_broker_url("rpc://") : e.broker;
  else
    e.backend = parse_broker_url(backend);
  if (e.backend.scheme == broker_url::kind::amqp)
    throw std::invalid_argument("result backend " + e.backend.redacted() +
                                " is not supported: use rpc:// or redis://");
  if (e.backend.scheme == broker_url::kind::rpc && !amqp)
    throw std::invalid_argument("result backend rpc:// needs an amqp:// broker");
  return e;
}

}  // namespace offload::broker::celery
