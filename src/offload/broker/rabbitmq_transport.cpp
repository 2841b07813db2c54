#include <algorithm>
#include <chrono>
#include <string_view>

#include <amqp.h>
#include <amqp_tcp_socket.h>

#include <offload/broker/rabbitmq_transport.hpp>

namespace offload::broker {
namespace {

constexpr amqp_channel_t k_channel = 1;
constexpr const char* k_dlx = "offload.dlx";

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
  return {static_cast<const char*>(b.bytes), b.len};
}

amqp_table_entry_t utf8_entry(const char* key, std::string_view value) {
  amqp_table_entry_t e{};
  e.key = amqp_cstring_bytes(key);
  e.value.kind = AMQP_FIELD_KIND_UTF8;
  e.value.value.bytes = bytes(value);
  return e;
}

std::string reply_text(const amqp_rpc_reply_t& r) {
  switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return "ok";
    case AMQP_RESPONSE_NONE:
      return "missing RPC reply";
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      return amqp_error_string2(r.library_error);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        const auto* m = static_cast<const amqp_connection_close_t*>(r.reply.decoded);
        return "connection closed by server: " + std::to_string(m->reply_code) + " " +
               str(m->reply_text);
      }
      if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        const auto* m = static_cast<const amqp_channel_close_t*>(r.reply.decoded);
        return "channel closed by server: " + std::to_string(m->reply_code) + " " +
               str(m->reply_text);
      }
      return "server exception";
  }
  return "unknown reply";
}

}  // namespace

struct rabbitmq_transport::state {
  amqp_connection_state_t conn = nullptr;
};

rabbitmq_transport::rabbitmq_transport(rabbitmq_options opts) : m_opts(std::move(opts)) {
  connect();
}

rabbitmq_transport::~rabbitmq_transport() {
  disconnect();
}

std::string rabbitmq_transport::describe() const {
  return "rabbitmq " + m_opts.where.host + ":" + std::to_string(m_opts.where.port);
}

void rabbitmq_transport::fail(const std::string& what) {
  disconnect();
  throw broker_error(describe() + ": " + what);
}

void rabbitmq_transport::check_rpc(const char* what) {
  const amqp_rpc_reply_t r = amqp_get_rpc_reply(m_state->conn);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) {
    fail(std::string(what) + ": " + reply_text(r));
  }
}

void rabbitmq_transport::connect() {
  m_state = new state;
  m_state->conn = amqp_new_connection();
  amqp_socket_t* sock = amqp_tcp_socket_new(m_state->conn);
  if (sock == nullptr) {
    fail("creating a socket failed");
  }
  const timeval ctv = to_timeval(m_opts.where.connect_timeout);
  const int rc = amqp_socket_open_noblock(sock, m_opts.where.host.c_str(), m_opts.where.port, &ctv);
  if (rc != AMQP_STATUS_OK) {
    fail(std::string("connect failed: ") + amqp_error_string2(rc));
  }
  const timeval io = to_timeval(m_opts.where.io_timeout);
  amqp_set_handshake_timeout(m_state->conn, &io);
  amqp_set_rpc_timeout(m_state->conn, &io);
  const amqp_rpc_reply_t login = amqp_login(m_state->conn,
                                            m_opts.vhost.c_str(),
                                            0,
                                            131072,
                                            0,
                                            AMQP_SASL_METHOD_PLAIN,
                                            m_opts.user.c_str(),
                                            m_opts.password.c_str());
  if (login.reply_type != AMQP_RESPONSE_NORMAL) {
    fail("login failed: " + reply_text(login));
  }
  amqp_channel_open(m_state->conn, k_channel);
  check_rpc("channel.open");
  if (m_opts.confirms) {
    amqp_confirm_select(m_state->conn, k_channel);
    check_rpc("confirm.select");
  }
  if (m_opts.prefetch > 0) {
    amqp_basic_qos(m_state->conn, k_channel, 0, m_opts.prefetch, 0);
    check_rpc("basic.qos");
  }
  ++m_generation;
  m_published = 0;
  m_confirmed = 0;
}

void rabbitmq_transport::disconnect() noexcept {
  if (m_state == nullptr) {
    return;
  }
  // Closing politely needs a live broker; destroying the connection is enough either way.
  amqp_destroy_connection(m_state->conn);
  delete m_state;
  m_state = nullptr;
  m_consumer_queue.clear();
  m_consuming.clear();
  m_pending.clear();  // unacked: the broker delivers them again
}

void rabbitmq_transport::ensure_connected() {
  if (m_state == nullptr) {
    connect();
  }
}

void rabbitmq_transport::declare(const std::string& queue) {
  ensure_connected();
  amqp_exchange_declare(m_state->conn,
                        k_channel,
                        amqp_cstring_bytes(k_dlx),
                        amqp_cstring_bytes("direct"),
                        0,
                        1,
                        0,
                        0,
                        amqp_empty_table);
  check_rpc("exchange.declare offload.dlx");
  const std::string dead = queue + ".dead";
  amqp_queue_declare(m_state->conn, k_channel, bytes(dead), 0, 1, 0, 0, amqp_empty_table);
  check_rpc(("queue.declare " + dead).c_str());
  amqp_queue_bind(m_state->conn,
                  k_channel,
                  bytes(dead),
                  amqp_cstring_bytes(k_dlx),
                  bytes(queue),
                  amqp_empty_table);
  check_rpc(("queue.bind " + dead).c_str());
  amqp_table_entry_t args[2] = {utf8_entry("x-dead-letter-exchange", k_dlx),
                                utf8_entry("x-dead-letter-routing-key", queue)};
  amqp_table_t table{2, args};
  amqp_queue_declare(m_state->conn, k_channel, bytes(queue), 0, 1, 0, 0, table);
  check_rpc(("queue.declare " + queue).c_str());
}

std::string rabbitmq_transport::make_reply_queue() {
  ensure_connected();
  const amqp_queue_declare_ok_t* ok =
      amqp_queue_declare(m_state->conn, k_channel, amqp_empty_bytes, 0, 0, 1, 1, amqp_empty_table);
  check_rpc("queue.declare (reply queue)");
  return str(ok->queue);
}

void rabbitmq_transport::publish_to(const std::string& exchange,
                                    const std::string& key,
                                    const message& m) {
  ensure_connected();
  amqp_basic_properties_t props{};
  props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
                 AMQP_BASIC_TYPE_FLAG | AMQP_BASIC_HEADERS_FLAG;
  props.content_type = amqp_cstring_bytes("application/octet-stream");
  props.delivery_mode = m_opts.persistent ? 2 : 1;
  props.type = bytes(m.task);
  if (!m.correlation_id.empty()) {
    props._flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
    props.correlation_id = bytes(m.correlation_id);
  }
  if (!m.reply_to.empty()) {
    props._flags |= AMQP_BASIC_REPLY_TO_FLAG;
    props.reply_to = bytes(m.reply_to);
  }
  if (!m.idempotency_key.empty()) {
    props._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
    props.message_id = bytes(m.idempotency_key);
  }
  amqp_table_entry_t headers[2]{};
  headers[0].key = amqp_cstring_bytes("x-attempt");
  headers[0].value.kind = AMQP_FIELD_KIND_I64;
  headers[0].value.value.i64 = m.attempt;
  int n = 1;
  if (!m.error.empty()) {
    headers[n++] = utf8_entry("x-error", m.error);
  }
  props.headers = amqp_table_t{n, headers};
  const int rc = amqp_basic_publish(
      m_state->conn, k_channel, bytes(exchange), bytes(key), 0, 0, &props, bytes(m.body));
  if (rc != AMQP_STATUS_OK) {
    fail(std::string("basic.publish failed: ") + amqp_error_string2(rc));
  }
  if (!m_opts.confirms) {
    return;
  }
  const std::uint64_t seq = ++m_published;
  const auto deadline = std::chrono::steady_clock::now() + m_opts.where.io_timeout;
  while (m_confirmed < seq) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      fail("no publisher confirm within " + std::to_string(m_opts.where.io_timeout.count()) +
           " ms");
    }
    pump(left);
  }
}

void rabbitmq_transport::publish(const std::string& queue, const message& m) {
  publish_to("", queue, m);
}

void rabbitmq_transport::start_consuming(const std::string& queue) {
  const amqp_basic_consume_ok_t* ok = amqp_basic_consume(
      m_state->conn, k_channel, bytes(queue), amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
  check_rpc(("basic.consume " + queue).c_str());
  m_consumer_queue[str(ok->consumer_tag)] = queue;
  m_consuming[queue] = true;
}

bool rabbitmq_transport::pump(std::chrono::milliseconds timeout) {
  amqp_maybe_release_buffers(m_state->conn);
  amqp_frame_t frame{};
  const timeval tv = to_timeval(std::max(timeout, std::chrono::milliseconds{0}));
  const int rc = amqp_simple_wait_frame_noblock(m_state->conn, &frame, &tv);
  if (rc == AMQP_STATUS_TIMEOUT) {
    return false;
  }
  if (rc != AMQP_STATUS_OK) {
    fail(std::string("connection lost: ") + amqp_error_string2(rc));
  }
  if (frame.frame_type != AMQP_FRAME_METHOD) {
    return true;  // heartbeats are handled by the library; nothing else arrives unasked
  }
  switch (frame.payload.method.id) {
    case AMQP_BASIC_DELIVER_METHOD: {
      const auto* d = static_cast<const amqp_basic_deliver_t*>(frame.payload.method.decoded);
      delivery out;
      out.tag = d->delivery_tag;
      out.redelivered = d->redelivered != 0;
      out.generation = m_generation;
      out.queue = m_consumer_queue[str(d->consumer_tag)];
      amqp_message_t msg{};
      const amqp_rpc_reply_t r = amqp_read_message(m_state->conn, frame.channel, &msg, 0);
      if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        fail("reading a delivery failed: " + reply_text(r));
      }
      const amqp_basic_properties_t& p = msg.properties;
      out.raw = str(msg.body);
      if ((p._flags & AMQP_BASIC_TYPE_FLAG) == 0 || p.type.len == 0) {
        out.malformed = "no task name (AMQP 'type' property missing)";
      } else {
        message m;
        m.task = str(p.type);
        if ((p._flags & AMQP_BASIC_CORRELATION_ID_FLAG) != 0) {
          m.correlation_id = str(p.correlation_id);
        }
        if ((p._flags & AMQP_BASIC_REPLY_TO_FLAG) != 0) {
          m.reply_to = str(p.reply_to);
        }
        if ((p._flags & AMQP_BASIC_MESSAGE_ID_FLAG) != 0) {
          m.idempotency_key = str(p.message_id);
        }
        if ((p._flags & AMQP_BASIC_HEADERS_FLAG) != 0) {
          for (int i = 0; i < p.headers.num_entries; ++i) {
            const amqp_table_entry_t& e = p.headers.entries[i];
            const std::string key = str(e.key);
            if (key == "x-attempt" && e.value.kind == AMQP_FIELD_KIND_I64 &&
                e.value.value.i64 > 0) {
              m.attempt = static_cast<unsigned>(e.value.value.i64);
            } else if (key == "x-error" && e.value.kind == AMQP_FIELD_KIND_UTF8) {
              m.error = str(e.value.value.bytes);
            }
          }
        }
        m.body = out.raw;
        out.msg = std::move(m);
      }
      amqp_destroy_message(&msg);
      m_pending.push_back(std::move(out));
      return true;
    }
    case AMQP_BASIC_ACK_METHOD: {
      const auto* a = static_cast<const amqp_basic_ack_t*>(frame.payload.method.decoded);
      m_confirmed = std::max(m_confirmed, static_cast<std::uint64_t>(a->delivery_tag));
      return true;
    }
    case AMQP_BASIC_NACK_METHOD:
      fail("the broker refused a published message (basic.nack)");
    case AMQP_CHANNEL_CLOSE_METHOD: {
      const auto* c = static_cast<const amqp_channel_close_t*>(frame.payload.method.decoded);
      fail("channel closed by server: " + std::to_string(c->reply_code) + " " + str(c->reply_text));
    }
    case AMQP_CONNECTION_CLOSE_METHOD: {
      const auto* c = static_cast<const amqp_connection_close_t*>(frame.payload.method.decoded);
      fail("connection closed by server: " + std::to_string(c->reply_code) + " " +
           str(c->reply_text));
    }
    default:
      return true;
  }
}

std::optional<delivery> rabbitmq_transport::receive(const std::string& queue,
                                                    std::chrono::milliseconds timeout) {
  ensure_connected();
  if (!m_consuming[queue]) {
    start_consuming(queue);
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    for (auto it = m_pending.begin(); it != m_pending.end(); ++it) {
      if (it->queue == queue) {
        delivery d = std::move(*it);
        m_pending.erase(it);
        return d;
      }
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (!pump(left) && std::chrono::steady_clock::now() >= deadline) {
      return std::nullopt;
    }
  }
}

void rabbitmq_transport::ack(const delivery& d) {
  if (m_state == nullptr || d.generation != m_generation) {
    return;  // its connection is gone: the broker will deliver it again
  }
  const int rc = amqp_basic_ack(m_state->conn, k_channel, d.tag, 0);
  if (rc != AMQP_STATUS_OK) {
    fail(std::string("basic.ack failed: ") + amqp_error_string2(rc));
  }
}

void rabbitmq_transport::dead_letter(const delivery& d, std::string_view reason) {
  message dead;
  if (d.msg) {
    dead = *d.msg;
  } else {
    dead.task = "malformed";
    dead.body = d.raw;
  }
  dead.error = std::string(reason);
  publish_to(k_dlx, d.queue, dead);
  ack(d);
}

std::size_t rabbitmq_transport::length(const std::string& queue) {
  ensure_connected();
  const amqp_queue_declare_ok_t* ok =
      amqp_queue_declare(m_state->conn, k_channel, bytes(queue), 1, 0, 0, 0, amqp_empty_table);
  check_rpc(("queue.declare passive " + queue).c_str());
  return ok->message_count;
}

}  // namespace offload::broker
