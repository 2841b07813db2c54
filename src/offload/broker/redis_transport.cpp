#include <atomic>
#include <random>
#include <stdexcept>
#include <vector>

#include <hiredis/hiredis.h>

#include <offload/broker/message_codec.hpp>
#include <offload/broker/redis_transport.hpp>

namespace offload::broker {
namespace {

timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

redisReply* as_reply(void* r) {
  return static_cast<redisReply*>(r);
}

std::string seconds_arg(std::chrono::milliseconds ms) {
  return std::to_string(static_cast<double>(ms.count()) / 1000.0);
}

}  // namespace

void redis_transport::reply_deleter::operator()(void* r) const noexcept {
  freeReplyObject(r);
}

redis_transport::redis_transport(redis_options opts) : m_opts(std::move(opts)) {
  connect();
}

redis_transport::~redis_transport() {
  disconnect();
}

std::string redis_transport::describe() const {
  return "redis " + m_opts.where.host + ":" + std::to_string(m_opts.where.port);
}

void redis_transport::fail(const std::string& what) {
  std::string text = describe() + ": " + what;
  if (m_ctx != nullptr && m_ctx->err != 0) {
    text += ": ";
    text += m_ctx->errstr;
  }
  disconnect();
  throw broker_error(text);
}

void redis_transport::connect() {
  const timeval tv = to_timeval(m_opts.where.connect_timeout);
  m_ctx = redisConnectWithTimeout(m_opts.where.host.c_str(), m_opts.where.port, tv);
  if (m_ctx == nullptr) {
    throw broker_error(describe() + ": connect failed: out of memory");
  }
  if (m_ctx->err != 0) {
    fail("connect failed");
  }
  ++m_generation;
}

void redis_transport::disconnect() noexcept {
  if (m_ctx != nullptr) {
    redisFree(m_ctx);
    m_ctx = nullptr;
  }
}

redis_transport::reply_ptr redis_transport::command(std::initializer_list<std::string_view> args,
                                                    std::chrono::milliseconds extra) {
  if (m_ctx == nullptr) {
    connect();
  }
  const timeval tv = to_timeval(m_opts.where.io_timeout + extra);
  if (redisSetTimeout(m_ctx, tv) != REDIS_OK) {
    fail("setting the socket timeout failed");
  }
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  argv.reserve(args.size());
  lens.reserve(args.size());
  for (std::string_view a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  reply_ptr r(redisCommandArgv(m_ctx, static_cast<int>(argv.size()), argv.data(), lens.data()));
  if (!r) {
    fail(std::string(*args.begin()) + " failed");
  }
  if (as_reply(r.get())->type == REDIS_REPLY_ERROR) {
    std::string err(as_reply(r.get())->str, as_reply(r.get())->len);
    throw broker_refused(describe() + ": " + std::string(*args.begin()) + " refused: " + err);
  }
  return r;
}

void redis_transport::declare(const std::string&) {
  command({"PING"});  // lists need no declaration; this checks the connection
}

std::string redis_transport::make_reply_queue() {
  static std::atomic<std::uint64_t> counter{0};
  std::random_device rd;
  return "reply." + std::to_string(rd()) + "." + std::to_string(++counter);
}

void redis_transport::publish(const std::string& queue, const message& m) {
  command({"LPUSH", queue, encode(m)});
}

std::string redis_transport::processing_list(const std::string& queue,
                                             const std::string& consumer) const {
  return queue + ".processing." + consumer;
}

std::optional<delivery> redis_transport::receive(const std::string& queue,
                                                 std::chrono::milliseconds timeout) {
  const bool poll = timeout.count() <= 0;
  reply_ptr r;
  std::string raw;
  if (m_opts.reliable) {
    const std::string proc = processing_list(queue, m_opts.consumer_id);
    r = poll ? command({"LMOVE", queue, proc, "RIGHT", "LEFT"})
             : command({"BLMOVE", queue, proc, "RIGHT", "LEFT", seconds_arg(timeout)}, timeout);
    if (as_reply(r.get())->type != REDIS_REPLY_STRING) {
      return std::nullopt;
    }
    raw.assign(as_reply(r.get())->str, as_reply(r.get())->len);
  } else {
    r = poll ? command({"RPOP", queue}) : command({"BRPOP", queue, seconds_arg(timeout)}, timeout);
    redisReply* rep = as_reply(r.get());
    if (rep->type == REDIS_REPLY_STRING) {
      raw.assign(rep->str, rep->len);
    } else if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2) {
      raw.assign(rep->element[1]->str, rep->element[1]->len);
    } else {
      return std::nullopt;
    }
  }
  delivery d;
  d.queue = queue;
  d.generation = m_generation;
  try {
    d.msg = decode(raw);
  } catch (const std::invalid_argument& e) {
    d.malformed = e.what();
  }
  d.raw = std::move(raw);
  return d;
}

void redis_transport::ack(const delivery& d) {
  if (m_opts.reliable) {
    command({"LREM", processing_list(d.queue, m_opts.consumer_id), "1", d.raw});
  }
}

void redis_transport::dead_letter(const delivery& d, std::string_view reason) {
  message dead;
  if (d.msg) {
    dead = *d.msg;
  } else {
    dead.task = "malformed";
    dead.body = d.raw;
  }
  dead.error = std::string(reason);
  command({"LPUSH", d.queue + ".dead", encode(dead)});
  ack(d);
}

std::size_t redis_transport::recover(const std::string& queue, const std::string& consumer_id) {
  const std::string proc = processing_list(queue, consumer_id);
  std::size_t moved = 0;
  // Newest first from the head of the processing list to the consuming end of the queue, so the
  // oldest ends up consumed first.
  for (;;) {
    reply_ptr r = command({"LMOVE", proc, queue, "LEFT", "RIGHT"});
    if (as_reply(r.get())->type != REDIS_REPLY_STRING) {
      return moved;
    }
    ++moved;
  }
}

void redis_transport::push_raw(const std::string& queue, std::string_view bytes) {
  command({"LPUSH", queue, bytes});
}

std::size_t redis_transport::length(const std::string& queue) {
  reply_ptr r = command({"LLEN", queue});
  return static_cast<std::size_t>(as_reply(r.get())->integer);
}

}  // namespace offload::broker
