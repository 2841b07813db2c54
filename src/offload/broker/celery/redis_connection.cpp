#include <algorithm>
#include <cerrno>
#include <iostream>

#include <hiredis/hiredis.h>
#include <poll.h>
#include <unistd.h>

#include <offload/broker/celery/redis_connection.hpp>

namespace offload::broker::celery {
namespace {

timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

}  // namespace

void redis_reply::deleter::operator()(redisReply* r) const noexcept {
  freeReplyObject(r);
}

bool redis_reply::is_nil() const noexcept {
  return !m_reply || m_reply->type == REDIS_REPLY_NIL;
}
bool redis_reply::is_string() const noexcept {
  return m_reply && (m_reply->type == REDIS_REPLY_STRING || m_reply->type == REDIS_REPLY_STATUS);
}
bool redis_reply::is_array() const noexcept {
  return m_reply && m_reply->type == REDIS_REPLY_ARRAY;
}
bool redis_reply::is_error() const noexcept {
  return m_reply && m_reply->type == REDIS_REPLY_ERROR;
}
std::string_view redis_reply::str() const noexcept {
  return is_string() || is_error() ? std::string_view(m_reply->str, m_reply->len)
                                   : std::string_view{};
}
long long redis_reply::integer() const noexcept {
  return m_reply && m_reply->type == REDIS_REPLY_INTEGER ? m_reply->integer : 0;
}
std::size_t redis_reply::size() const noexcept {
  return is_array() ? m_reply->elements : 0;
}
std::string_view redis_reply::element_str(std::size_t i) const noexcept {
  if (i >= size())
    return {};
  const redisReply* e = m_reply->element[i];
  if (e->type != REDIS_REPLY_STRING && e->type != REDIS_REPLY_STATUS)
    return {};
  return {e->str, e->len};
}

redis_connection::redis_connection(broker_url url,
                                   std::chrono::milliseconds connect_timeout,
                                   std::chrono::milliseconds io_timeout)
    : m_url(std::move(url)), m_connect_timeout(connect_timeout), m_io_timeout(io_timeout) {}

redis_connection::~redis_connection() {
  disconnect();
}

std::string redis_connection::describe() const {
  return "redis " + m_url.host + ":" + std::to_string(m_url.port) + "/" + std::to_string(m_url.db);
}

void redis_connection::disconnect() noexcept {
  if (m_ctx != nullptr) {
    redisFree(m_ctx);
    m_ctx = nullptr;
  }
  m_unread = 0;
}

void redis_connection::write_ahead(const std::vector<args>& commands) {
  if (m_ctx == nullptr)
    connect();
  set_timeout(m_io_timeout);
  for (const args& a : commands) append(a);
  m_unread += commands.size();
  int done = 0;
  while (done == 0)
    if (redisBufferWrite(m_ctx, &done) != REDIS_OK)
      fail("writing " + std::to_string(commands.size()) + " command(s) failed");
}

void redis_connection::read_ahead() {
  for (; m_unread > 0; --m_unread) {
    void* raw = nullptr;
    if (redisGetReply(m_ctx, &raw) != REDIS_OK || raw == nullptr)
      fail("reading the reply of a command written ahead failed");
    const redis_reply r(static_cast<redisReply*>(raw));
    if (r.is_error())
      std::cerr << describe() << ": a command written ahead was refused: " << r.str() << "\n";
  }
}

void redis_connection::fail(const std::string& what) {
  std::string text = describe() + ": " + what;
  if (m_ctx != nullptr && m_ctx->err != 0) {
    text += ": ";
    text += m_ctx->errstr;
  }
  disconnect();
  throw broker_error(text);
}

void redis_connection::set_timeout(std::chrono::milliseconds t) {
  if (t == m_timeout_set)
    return;
  if (redisSetTimeout(m_ctx, to_timeval(t)) != REDIS_OK)
    fail("setting the socket timeout failed");
  m_timeout_set = t;
}

void redis_connection::connect() {
  m_ctx = redisConnectWithTimeout(m_url.host.c_str(), m_url.port, to_timeval(m_connect_timeout));
  if (m_ctx == nullptr)
    throw broker_error(describe() + ": connect failed: out of memory");
  if (m_ctx->err != 0)
    fail("connect failed");
  ++m_generation;
  m_timeout_set = std::chrono::milliseconds(-1);
  m_shas.clear();
  if (!m_url.password.empty()) {
    if (m_url.user.empty())
      command({"AUTH", m_url.password});
    else
      command({"AUTH", m_url.user, m_url.password});
  }
  if (m_url.db != 0)
    command({"SELECT", std::to_string(m_url.db)});
}

void redis_connection::append(const args& a) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  argv.reserve(a.size());
  lens.reserve(a.size());
  for (std::string_view s : a) {
    argv.push_back(s.data());
    lens.push_back(s.size());
  }
  if (redisAppendCommandArgv(m_ctx, static_cast<int>(argv.size()), argv.data(), lens.data()) !=
      REDIS_OK)
    fail("queueing " + std::string(a.front()) + " failed");
}

redis_reply redis_connection::command(const args& a, std::chrono::milliseconds extra) {
  if (m_ctx == nullptr)
    connect();
  set_timeout(m_io_timeout + extra);
  append(a);
  read_ahead();  // after append(): its first read sends `a` too, one round trip for both
  void* raw = nullptr;
  if (redisGetReply(m_ctx, &raw) != REDIS_OK || raw == nullptr)
    fail(std::string(a.front()) + " failed");
  auto* r = static_cast<redisReply*>(raw);
  redis_reply owned(r);
  if (r->type == REDIS_REPLY_ERROR)
    refused(a.front(), std::string_view(r->str, r->len));
  return owned;
}

bool redis_connection::not_ready(std::string_view error) noexcept {
  // A server that is starting (LOADING its data), busy with a script or without its master
  // answers every command so for a while: a broker not there yet, not a wrong command.
  for (const std::string_view transient : {"LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN"})
    if (error.substr(0, transient.size()) == transient)
      return true;
  return false;
}

void redis_connection::refused(std::string_view command, std::string_view error) {
  const std::string what =
      describe() + ": " + std::string(command) + " refused: " + std::string(error);
  if (not_ready(error))
    throw broker_error(what);
  throw broker_refused(what);
}

std::vector<redis_reply> redis_connection::pipeline(const std::vector<args>& commands) {
  std::vector<redis_reply> replies = pipeline_replies(commands);
  for (std::size_t i = 0; i < replies.size(); ++i)
    if (replies[i].is_error())
      refused(commands[i].front(), replies[i].str());
  return replies;
}

std::vector<redis_reply> redis_connection::pipeline_replies(const std::vector<args>& commands,
                                                            std::chrono::milliseconds extra) {
  if (m_ctx == nullptr)
    connect();
  set_timeout(m_io_timeout + extra);
  for (const args& a : commands) append(a);
  read_ahead();  // after append(): its first read sends the pipeline too, one round trip
  std::vector<redis_reply> replies;
  replies.reserve(commands.size());
  for (const args& a : commands) {
    void* raw = nullptr;
    if (redisGetReply(m_ctx, &raw) != REDIS_OK || raw == nullptr)
      fail(std::string(a.front()) + " failed");
    replies.emplace_back(static_cast<redisReply*>(raw));
  }
  return replies;
}

const std::string& redis_connection::script_sha(const std::string& script) {
  if (m_ctx == nullptr)
    connect();  // clears m_shas: a new connection loads its scripts again
  if (const auto it = m_shas.find(script); it != m_shas.end())
    return it->second;
  const redis_reply r = command({"SCRIPT", "LOAD", script});
  return m_shas.emplace(script, std::string(r.str())).first->second;
}

void redis_connection::send(const args& a) {
  if (m_ctx == nullptr)
    connect();
  set_timeout(m_io_timeout);
  append(a);
  int done = 0;
  while (done == 0)
    if (redisBufferWrite(m_ctx, &done) != REDIS_OK)
      fail("sending " + std::string(a.front()) + " failed");
}

std::optional<redis_reply> redis_connection::next_push(std::chrono::milliseconds timeout,
                                                       int wake_fd) {
  if (m_ctx == nullptr)
    fail("not subscribed");
  const auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    void* raw = nullptr;
    if (redisReaderGetReply(m_ctx->reader, &raw) != REDIS_OK)
      fail("reading a published message failed: protocol error");
    if (raw != nullptr)
      return redis_reply(static_cast<redisReply*>(raw));
    // Nothing buffered: wait for the socket without hiredis, whose read timeout would leave
    // the context unusable.
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    pollfd p[2] = {{m_ctx->fd, POLLIN, 0}, {wake_fd, POLLIN, 0}};
    const int n =
        ::poll(p, wake_fd < 0 ? 1 : 2, static_cast<int>(std::max<long long>(0, left.count())));
    if (n == 0)
      return std::nullopt;
    if (n < 0 && errno != EINTR)
      fail("waiting for a published message failed");
    if (n > 0 && (p[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0 &&
        redisBufferRead(m_ctx) != REDIS_OK)
      fail("reading a published message failed");
    if (wake_fd >= 0 && (p[1].revents & POLLIN) != 0) {
      std::uint64_t drained = 0;
      [[maybe_unused]] const ssize_t r = ::read(wake_fd, &drained, sizeof drained);
      return std::nullopt;
    }
  }
}

}  // namespace offload::broker::celery
