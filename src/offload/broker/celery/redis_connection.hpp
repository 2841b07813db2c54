#pragma once

/// @file
/// @brief One blocking hiredis connection: commands in argv form, pipelines, and the
/// subscriber mode that pub/sub needs. Not thread-safe: one per thread.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <offload/broker/broker_error.hpp>
#include <offload/broker/celery/broker_url.hpp>

struct redisContext;
struct redisReply;

namespace offload::broker::celery {

/// A reply, owned. Views into it live as long as it does.
class redis_reply {
 public:
  redis_reply() = default;
  explicit redis_reply(redisReply* r) noexcept : m_reply(r) {}

  bool is_nil() const noexcept;
  bool is_string() const noexcept;  ///< a bulk or status string
  bool is_array() const noexcept;
  bool is_error() const noexcept;
  std::string_view str() const noexcept;  ///< empty unless a string (or an error's text)
  long long integer() const noexcept;     ///< 0 unless an integer
  std::size_t size() const noexcept;      ///< array elements
  /// Element i of an array: a borrowed view (not owned).
  std::string_view element_str(std::size_t i) const noexcept;

 private:
  struct deleter {
    void operator()(redisReply* r) const noexcept;
  };
  std::unique_ptr<redisReply, deleter> m_reply;
};

class redis_connection {
 public:
  using args = std::vector<std::string_view>;

  /// Connects at the first command. `url` is a redis:// URL (its database is SELECTed).
  redis_connection(broker_url url,
                   std::chrono::milliseconds connect_timeout = std::chrono::milliseconds(2000),
                   std::chrono::milliseconds io_timeout = std::chrono::milliseconds(5000));
  ~redis_connection();
  redis_connection(const redis_connection&) = delete;
  redis_connection& operator=(const redis_connection&) = delete;

  /// Runs one command; the socket waits at most io_timeout + `extra` (a blocking command's own
  /// timeout goes in `extra`). Throws broker_error on a lost connection (the next command
  /// reconnects) and broker_refused on an error reply.
  redis_reply command(const args& a, std::chrono::milliseconds extra = {});
  /// Sends every command, then reads every reply, in one round trip. The first error reply
  /// throws broker_refused after all replies are read.
  std::vector<redis_reply> pipeline(const std::vector<args>& commands);
  /// pipeline() that returns error replies among the others instead of throwing on them; the
  /// socket waits at most io_timeout + `extra` (a blocking command's own timeout).
  std::vector<redis_reply> pipeline_replies(const std::vector<args>& commands,
                                            std::chrono::milliseconds extra = {});

  /// The SHA1 of Lua `script` on this server, for EVALSHA: loaded with SCRIPT LOAD at the first
  /// call on each connection and remembered. After a NOSCRIPT reply (the server restarted or
  /// flushed its scripts), forget_scripts() and ask again.
  const std::string& script_sha(const std::string& script);
  void forget_scripts() noexcept { m_shas.clear(); }

  /// Writes `commands` now and reads their replies later, in the same round trip as the next
  /// command or pipeline, before its replies (error replies among them are reported on stderr, as
  /// the commands' callers cannot see them). Not in subscriber mode. Throws broker_error on a lost
  /// connection.
  void write_ahead(const std::vector<args>& commands);

  /// Writes one command without reading its reply (subscriber mode: SUBSCRIBE/UNSUBSCRIBE,
  /// whose confirmations arrive through next_push() among the messages). Connects if needed.
  void send(const args& a);
  /// Subscriber mode: after PSUBSCRIBE/SUBSCRIBE through command() or send(), waits up to `timeout`
  /// for the next pushed message. Nothing: none in time, or `wake_fd` (an eventfd, if not -1)
  /// became readable (it is drained). Throws broker_error on a lost connection.
  std::optional<redis_reply> next_push(std::chrono::milliseconds timeout, int wake_fd = -1);

  /// Bumped at each new connection: state tied to a connection (subscriptions) is renewed by
  /// the caller when it changes.
  std::uint64_t generation() const noexcept { return m_generation; }
  bool connected() const noexcept { return m_ctx != nullptr; }
  const broker_url& url() const noexcept { return m_url; }
  std::string describe() const;  ///< "redis 127.0.0.1:6379/0"
  void disconnect() noexcept;
  /// An error reply that says the server is not ready yet (LOADING, BUSY, MASTERDOWN,
  /// TRYAGAIN): to be retried like a lost connection.
  static bool not_ready(std::string_view error) noexcept;

 private:
  void connect();
  void append(const args& a);  ///< queues a command in hiredis' output buffer
  void read_ahead();           ///< reads the replies write_ahead() left
  void set_timeout(std::chrono::milliseconds t);
  [[noreturn]] void fail(const std::string& what);
  /// Throws broker_refused for an error reply, or broker_error for one that says the server is
  /// not ready yet (LOADING, BUSY, MASTERDOWN, TRYAGAIN).
  [[noreturn]] void refused(std::string_view command, std::string_view error);

  broker_url m_url;
  std::chrono::milliseconds m_connect_timeout;
  std::chrono::milliseconds m_io_timeout;
  redisContext* m_ctx = nullptr;
  std::uint64_t m_generation = 0;
  std::size_t m_unread = 0;                             ///< replies of write_ahead() not read yet
  std::chrono::milliseconds m_timeout_set{-1};          ///< the socket's timeout now (-1: none set)
  std::unordered_map<std::string, std::string> m_shas;  ///< script text -> SHA1 on this server
};

}  // namespace offload::broker::celery
