#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <vector>

#include <amqp.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>

#include <offload/broker/celery/amqp_connection.hpp>

namespace offload::broker::celery {
namespace {

constexpr amqp_channel_t k_channel = 1;  // declarations, consumers, publishes, acks
constexpr amqp_channel_t k_probe = 2;    // passive declares: a 404 closes this one only

timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

amqp_bytes_t bytes(std::string_view s) {
  amqp_bytes_t b;
  b.len = s.size();
  b.bytes = const_cast<char*>(s.data());  // rabbitmq-c takes non-const pointers it only reads
  return b;
}

std::string str(amqp_bytes_t b) {
  return b.len == 0 ? std::string() : std::string(static_cast<const char*>(b.bytes), b.len);
}

std::string close_text(const amqp_method_t& m) {
  if (m.id == AMQP_CONNECTION_CLOSE_METHOD) {
    const auto* c = static_cast<const amqp_connection_close_t*>(m.decoded);
    return "connection closed by the broker: " + std::to_string(c->reply_code) + " " +
           str(c->reply_text);
  }
  if (m.id == AMQP_CHANNEL_CLOSE_METHOD) {
    const auto* c = static_cast<const amqp_channel_close_t*>(m.decoded);
    return "channel closed by the broker: " + std::to_string(c->reply_code) + " " +
           str(c->reply_text);
  }
  return "unexpected method " + std::to_string(m.id);
}

std::string reply_text(const amqp_rpc_reply_t& r) {
  switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return "ok";
    case AMQP_RESPONSE_NONE:
      return "no reply";
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      return amqp_error_string2(r.library_error);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      return close_text(r.reply);
  }
  return "unknown reply";
}

json to_json(const amqp_field_value_t& v);

json to_json(const amqp_table_t& t) {
  json out = json::object();
  for (int i = 0; i < t.num_entries; ++i) out[str(t.entries[i].key)] = to_json(t.entries[i].value);
  return out;
}

json to_json(const amqp_field_value_t& v) {
  switch (v.kind) {
    case AMQP_FIELD_KIND_BOOLEAN:
      return v.value.boolean != 0;
    case AMQP_FIELD_KIND_I8:
      return v.value.i8;
    case AMQP_FIELD_KIND_U8:
      return v.value.u8;
    case AMQP_FIELD_KIND_I16:
      return v.value.i16;
    case AMQP_FIELD_KIND_U16:
      return v.value.u16;
    case AMQP_FIELD_KIND_I32:
      return v.value.i32;
    case AMQP_FIELD_KIND_U32:
      return v.value.u32;
    case AMQP_FIELD_KIND_I64:
      return v.value.i64;
    case AMQP_FIELD_KIND_U64:
    case AMQP_FIELD_KIND_TIMESTAMP:
      return v.value.u64;
    case AMQP_FIELD_KIND_F32:
      return static_cast<double>(v.value.f32);
    case AMQP_FIELD_KIND_F64:
      return v.value.f64;
    case AMQP_FIELD_KIND_DECIMAL:
      return static_cast<double>(v.value.decimal.value) /
             std::pow(10.0, static_cast<double>(v.value.decimal.decimals));
    case AMQP_FIELD_KIND_UTF8:
    case AMQP_FIELD_KIND_BYTES:
      return str(v.value.bytes);
    case AMQP_FIELD_KIND_ARRAY: {
      json out = json::array();
      for (int i = 0; i < v.value.array.num_entries; ++i)
        out.push_back(to_json(v.value.array.entries[i]));
      return out;
    }
    case AMQP_FIELD_KIND_TABLE:
      return to_json(v.value.table);
    default:  // AMQP_FIELD_KIND_VOID
      return nullptr;
  }
}

/// A JSON object as an AMQP table, with the storage it points into. Integers are 'I' when they
/// fit in 32 bits and 'l' otherwise, floats 'd', strings 'S', null 'V' (as py-amqp writes them).
class table_builder {
 public:
  amqp_table_t table(const json& object) {
    auto& entries = m_entries.emplace_back(object.size());
    std::size_t i = 0;
    for (const auto& [key, value] : object.items()) {
      entries[i].key = bytes(m_strings.emplace_back(key));
      entries[i].value = field(value);
      ++i;
    }
    return amqp_table_t{static_cast<int>(entries.size()), entries.data()};
  }

 private:
  amqp_field_value_t field(const json& v) {
    amqp_field_value_t f{};
    if (v.is_boolean()) {
      f.kind = AMQP_FIELD_KIND_BOOLEAN;
      f.value.boolean = v.get<bool>() ? 1 : 0;
    } else if (v.is_number_unsigned() || v.is_number_integer()) {
      const bool negative = v.is_number_integer() && v.get<std::int64_t>() < 0;
      if (!negative && v.get<std::uint64_t>() > std::numeric_limits<std::int64_t>::max()) {
        f.kind = AMQP_FIELD_KIND_U64;
        f.value.u64 = v.get<std::uint64_t>();
      } else {
        const std::int64_t n = v.get<std::int64_t>();
        if (n >= std::numeric_limits<std::int32_t>::min() &&
            n <= std::numeric_limits<std::int32_t>::max()) {
          f.kind = AMQP_FIELD_KIND_I32;
          f.value.i32 = static_cast<std::int32_t>(n);
        } else {
          f.kind = AMQP_FIELD_KIND_I64;
          f.value.i64 = n;
        }
      }
    } else if (v.is_number_float()) {
      f.kind = AMQP_FIELD_KIND_F64;
      f.value.f64 = v.get<double>();
    } else if (v.is_string()) {
      f.kind = AMQP_FIELD_KIND_UTF8;
      f.value.bytes = bytes(m_strings.emplace_back(v.get<std::string>()));
    } else if (v.is_array()) {
      auto& values = m_values.emplace_back(v.size());
      for (std::size_t i = 0; i < v.size(); ++i) values[i] = field(v[i]);
      f.kind = AMQP_FIELD_KIND_ARRAY;
      f.value.array = amqp_array_t{static_cast<int>(values.size()), values.data()};
    } else if (v.is_object()) {
      f.kind = AMQP_FIELD_KIND_TABLE;
      f.value.table = table(v);
    } else {
      f.kind = AMQP_FIELD_KIND_VOID;
    }
    return f;
  }

  // Deques: what was handed out keeps its address while more is added.
  std::deque<std::string> m_strings;
  std::deque<std::vector<amqp_table_entry_t>> m_entries;
  std::deque<std::vector<amqp_field_value_t>> m_values;
};

}  // namespace

struct amqp_connection::state {
  amqp_connection_state_t conn = nullptr;
  ~state() {
    if (conn != nullptr)
      amqp_destroy_connection(conn);  // closing politely needs a live broker: not attempted
  }
};

amqp_connection::amqp_connection(const broker_url& url, amqp_connection_options options)
    : m_state(std::make_unique<state>()),
      m_describe((url.tls ? "amqps " : "amqp ") + url.host + ":" + std::to_string(url.port) +
                 " vhost '" + url.vhost + "'") {
  if (url.scheme != broker_url::kind::amqp)
    throw std::invalid_argument("amqp_connection: " + url.redacted() + " is not amqp://");
  m_state->conn = amqp_new_connection();
  if (m_state->conn == nullptr)
    fail("out of memory");
  amqp_socket_t* sock =
      url.tls ? amqp_ssl_socket_new(m_state->conn) : amqp_tcp_socket_new(m_state->conn);
  if (sock == nullptr)
    fail("creating a socket failed");
  if (url.tls) {
    const bool verify = !options.ca_file.empty();
    amqp_ssl_socket_set_verify_peer(sock, verify ? 1 : 0);
    amqp_ssl_socket_set_verify_hostname(sock, verify ? 1 : 0);
    if (verify && amqp_ssl_socket_set_cacert(sock, options.ca_file.c_str()) != AMQP_STATUS_OK)
      fail("cannot read the CA file '" + options.ca_file + "'");
  }
  const timeval ctv = to_timeval(options.connect_timeout);
  const int rc = amqp_socket_open_noblock(sock, url.host.c_str(), url.port, &ctv);
  if (rc == AMQP_STATUS_SSL_PEER_VERIFY_FAILED || rc == AMQP_STATUS_SSL_HOSTNAME_VERIFY_FAILED)
    // The broker is there but is not the one the CA file vouches for: trying again won't help.
    throw broker_refused(m_describe + ": TLS: " + amqp_error_string2(rc) + " (CA file '" +
                         options.ca_file + "')");
  if (rc != AMQP_STATUS_OK)
    fail(std::string("connect failed: ") + amqp_error_string2(rc));
  const timeval io = to_timeval(options.io_timeout);
  amqp_set_handshake_timeout(m_state->conn, &io);
  amqp_set_rpc_timeout(m_state->conn, &io);
  const amqp_rpc_reply_t login = amqp_login(m_state->conn,
                                            url.vhost.c_str(),
                                            0,
                                            131072,
                                            static_cast<int>(options.heartbeat.count()),
                                            AMQP_SASL_METHOD_PLAIN,
                                            url.user.c_str(),
                                            url.password.c_str());
  if (login.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION)
    throw broker_refused(m_describe + ": login as '" + url.user +
                         "' refused: " + reply_text(login));
  if (login.reply_type != AMQP_RESPONSE_NORMAL)
    fail("login as '" + url.user + "' failed: " + reply_text(login));
  amqp_channel_open(m_state->conn, k_channel);
  check("channel.open");
  amqp_channel_open(m_state->conn, k_probe);
  check("channel.open (probe)");
}

amqp_connection::~amqp_connection() = default;

void amqp_connection::fail(const std::string& what) {
  throw broker_error(m_describe + ": " + what);
}

void amqp_connection::check(const char* what) {
  const amqp_rpc_reply_t r = amqp_get_rpc_reply(m_state->conn);
  if (r.reply_type == AMQP_RESPONSE_NORMAL)
    return;
  const std::string text = std::string(what) + ": " + reply_text(r);
  if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION) {
    // The broker refused this method (a 406, a 403, …) and closed the channel or the
    // connection: what was asked is wrong, not the network. This connection is done.
    throw broker_refused(m_describe + ": " + text);
  }
  fail(text);
}

bool amqp_connection::exists(bool queue, std::string_view name, std::uint32_t* message_count) {
  if (queue) {
    const amqp_queue_declare_ok_t* ok =
        amqp_queue_declare(m_state->conn, k_probe, bytes(name), 1, 0, 0, 0, amqp_empty_table);
    if (ok != nullptr && message_count != nullptr)
      *message_count = ok->message_count;
  } else {
    amqp_exchange_declare(m_state->conn,
                          k_probe,
                          bytes(name),
                          amqp_cstring_bytes("direct"),
                          1,
                          0,
                          0,
                          0,
                          amqp_empty_table);
  }
  const amqp_rpc_reply_t r = amqp_get_rpc_reply(m_state->conn);
  if (r.reply_type == AMQP_RESPONSE_NORMAL)
    return true;
  if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && r.reply.id == AMQP_CHANNEL_CLOSE_METHOD &&
      static_cast<const amqp_channel_close_t*>(r.reply.decoded)->reply_code == 404) {
    amqp_channel_close_ok_t close_ok{};
    if (amqp_send_method(m_state->conn, k_probe, AMQP_CHANNEL_CLOSE_OK_METHOD, &close_ok) !=
        AMQP_STATUS_OK)
      fail("channel.close-ok (probe) could not be sent");
    amqp_channel_open(m_state->conn, k_probe);
    check("channel.open (probe)");
    return false;
  }
  fail(std::string(queue ? "queue" : "exchange") + ".declare passive '" + std::string(name) +
       "': " + reply_text(r));
}

void amqp_connection::ensure_exchange(std::string_view name,
                                      std::string_view type,
                                      bool durable,
                                      bool auto_delete) {
  if (exists(false, name))
    return;
  amqp_exchange_declare(m_state->conn,
                        k_channel,
                        bytes(name),
                        bytes(type),
                        0,
                        durable ? 1 : 0,
                        auto_delete ? 1 : 0,
                        0,
                        amqp_empty_table);
  check(("exchange.declare '" + std::string(name) + "'").c_str());
}

std::uint32_t amqp_connection::ensure_queue(std::string_view name,
                                            bool durable,
                                            bool auto_delete,
                                            const json& arguments) {
  std::uint32_t count = 0;
  if (exists(true, name, &count))
    return count;
  table_builder b;
  const amqp_table_t args = b.table(arguments.is_object() ? arguments : json::object());
  const amqp_queue_declare_ok_t* ok = amqp_queue_declare(
      m_state->conn, k_channel, bytes(name), 0, durable ? 1 : 0, 0, auto_delete ? 1 : 0, args);
  check(("queue.declare '" + std::string(name) + "'").c_str());
  return ok != nullptr ? ok->message_count : 0;
}

void amqp_connection::bind(std::string_view queue,
                           std::string_view exchange,
                           std::string_view routing_key) {
  amqp_queue_bind(m_state->conn,
                  k_channel,
                  bytes(queue),
                  bytes(exchange),
                  bytes(routing_key),
                  amqp_empty_table);
  check(("queue.bind '" + std::string(queue) + "' to '" + std::string(exchange) + "'").c_str());
}

void amqp_connection::qos(std::uint16_t prefetch) {
  amqp_basic_qos(m_state->conn, k_channel, 0, prefetch, 1);
  check("basic.qos");
}

std::string amqp_connection::consume(std::string_view queue, bool no_ack) {
  const amqp_basic_consume_ok_t* ok = amqp_basic_consume(m_state->conn,
                                                         k_channel,
                                                         bytes(queue),
                                                         amqp_empty_bytes,
                                                         0,
                                                         no_ack ? 1 : 0,
                                                         0,
                                                         amqp_empty_table);
  check(("basic.consume '" + std::string(queue) + "'").c_str());
  return str(ok->consumer_tag);
}

void amqp_connection::cancel(std::string_view consumer_tag) {
  amqp_basic_cancel(m_state->conn, k_channel, bytes(consumer_tag));
  check("basic.cancel");
}

void amqp_connection::publish(std::string_view exchange,
                              std::string_view routing_key,
                              const amqp_properties& p,
                              std::string_view body) {
  table_builder b;
  amqp_basic_properties_t props{};
  props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_CONTENT_ENCODING_FLAG |
                 AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_PRIORITY_FLAG | AMQP_BASIC_HEADERS_FLAG;
  props.content_type = bytes(p.content_type);
  props.content_encoding = bytes(p.content_encoding);
  props.delivery_mode = static_cast<std::uint8_t>(p.delivery_mode);
  props.priority = static_cast<std::uint8_t>(std::clamp(p.priority, 0, 255));
  props.headers = b.table(p.headers.is_object() ? p.headers : json::object());
  if (!p.correlation_id.empty()) {
    props._flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
    props.correlation_id = bytes(p.correlation_id);
  }
  if (!p.reply_to.empty()) {
    props._flags |= AMQP_BASIC_REPLY_TO_FLAG;
    props.reply_to = bytes(p.reply_to);
  }
  const int rc = amqp_basic_publish(
      m_state->conn, k_channel, bytes(exchange), bytes(routing_key), 0, 0, &props, bytes(body));
  if (rc != AMQP_STATUS_OK)
    fail("basic.publish to '" + std::string(exchange) + "' failed: " + amqp_error_string2(rc));
}

void amqp_connection::ack(std::uint64_t tag) {
  const int rc = amqp_basic_ack(m_state->conn, k_channel, tag, 0);
  if (rc != AMQP_STATUS_OK)
    fail(std::string("basic.ack failed: ") + amqp_error_string2(rc));
}

void amqp_connection::reject(std::uint64_t tag, bool requeue) {
  const int rc = amqp_basic_reject(m_state->conn, k_channel, tag, requeue ? 1 : 0);
  if (rc != AMQP_STATUS_OK)
    fail(std::string("basic.reject failed: ") + amqp_error_string2(rc));
}

bool amqp_connection::buffered() const {
  return amqp_frames_enqueued(m_state->conn) != 0 || amqp_data_in_buffer(m_state->conn) != 0;
}

int amqp_connection::fd() const {
  return amqp_get_sockfd(m_state->conn);
}

std::optional<amqp_message> amqp_connection::next() {
  amqp_maybe_release_buffers(m_state->conn);
  amqp_frame_t frame{};
  timeval now{};
  const int rc = amqp_simple_wait_frame_noblock(m_state->conn, &frame, &now);
  if (rc == AMQP_STATUS_TIMEOUT)
    return std::nullopt;
  if (rc != AMQP_STATUS_OK)
    fail(std::string("connection lost: ") + amqp_error_string2(rc));
  if (frame.frame_type != AMQP_FRAME_METHOD)
    return std::nullopt;
  switch (frame.payload.method.id) {
    case AMQP_BASIC_DELIVER_METHOD: {
      const auto* d = static_cast<const amqp_basic_deliver_t*>(frame.payload.method.decoded);
      amqp_message out;
      out.tag = d->delivery_tag;
      out.delivery.delivery_tag = std::to_string(d->delivery_tag);
      out.delivery.exchange = str(d->exchange);
      out.delivery.routing_key = str(d->routing_key);
      out.delivery.redelivered = d->redelivered != 0;
      out.consumer_tag = str(d->consumer_tag);
      amqp_message_t msg{};
      const amqp_rpc_reply_t r = amqp_read_message(m_state->conn, frame.channel, &msg, 0);
      if (r.reply_type != AMQP_RESPONSE_NORMAL)
        fail("reading a delivery failed: " + reply_text(r));
      const amqp_basic_properties_t& p = msg.properties;
      amqp_delivery& dv = out.delivery;
      if ((p._flags & AMQP_BASIC_CONTENT_TYPE_FLAG) != 0)
        dv.content_type = str(p.content_type);
      if ((p._flags & AMQP_BASIC_CONTENT_ENCODING_FLAG) != 0)
        dv.content_encoding = str(p.content_encoding);
      if ((p._flags & AMQP_BASIC_HEADERS_FLAG) != 0)
        dv.headers = to_json(p.headers);
      if ((p._flags & AMQP_BASIC_CORRELATION_ID_FLAG) != 0)
        dv.correlation_id = str(p.correlation_id);
      if ((p._flags & AMQP_BASIC_REPLY_TO_FLAG) != 0)
        dv.reply_to = str(p.reply_to);
      if ((p._flags & AMQP_BASIC_PRIORITY_FLAG) != 0)
        dv.priority = p.priority;
      if ((p._flags & AMQP_BASIC_DELIVERY_MODE_FLAG) != 0)
        dv.delivery_mode = p.delivery_mode;
      out.body = str(msg.body);
      amqp_destroy_message(&msg);
      return out;
    }
    case AMQP_BASIC_CANCEL_METHOD: {
      const auto* c = static_cast<const amqp_basic_cancel_t*>(frame.payload.method.decoded);
      fail("the broker cancelled consumer '" + str(c->consumer_tag) + "' (its queue was deleted?)");
    }
    case AMQP_CONNECTION_CLOSE_METHOD: {
      const std::string text = close_text(frame.payload.method);
      amqp_connection_close_ok_t ok{};
      amqp_send_method(m_state->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
      fail(text);
    }
    case AMQP_CHANNEL_CLOSE_METHOD:
      fail(close_text(frame.payload.method));
    default:
      return std::nullopt;
  }
}

}  // namespace offload::broker::celery
