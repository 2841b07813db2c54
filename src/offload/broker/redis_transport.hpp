#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <offload/broker/transport.hpp>

struct redisContext;

namespace offload::broker {

struct redis_options {
  endpoint where;
  /// false: LPUSH/BRPOP, a message is gone once popped (a crash loses it).
  /// true: BLMOVE into "<queue>.processing.<consumer_id>", removed by ack; recover() puts back
  /// what a crashed consumer of that id held.
  bool reliable = false;
  std::string consumer_id = "worker";
};

/// Redis lists through hiredis. Messages are encoded with message_codec.
class redis_transport final : public transport {
 public:
  explicit redis_transport(redis_options opts);  ///< connects now; throws broker_error
  ~redis_transport() override;
  redis_transport(const redis_transport&) = delete;
  redis_transport& operator=(const redis_transport&) = delete;

  void declare(const std::string& queue) override;
  std::string make_reply_queue() override;
  void publish(const std::string& queue, const message& m) override;
  std::optional<delivery> receive(const std::string& queue,
                                  std::chrono::milliseconds timeout) override;
  void ack(const delivery& d) override;
  void dead_letter(const delivery& d, std::string_view reason) override;
  std::size_t length(const std::string& queue) override;
  std::string describe() const override;

  /// Moves everything in "<queue>.processing.<consumer_id>" back to the queue, to be consumed
  /// next; returns how many. Call it when the consumer of that id is known to be dead.
  std::size_t recover(const std::string& queue, const std::string& consumer_id);
  /// LPUSHes bytes as they are (tests of malformed input).
  void push_raw(const std::string& queue, std::string_view bytes);

 private:
  struct reply_deleter {
    void operator()(void* r) const noexcept;
  };
  using reply_ptr = std::unique_ptr<void, reply_deleter>;

  void connect();
  void disconnect() noexcept;
  /// Runs one command (argv form) with a socket timeout of io_timeout + extra; throws on error.
  reply_ptr command(std::initializer_list<std::string_view> args,
                    std::chrono::milliseconds extra = std::chrono::milliseconds{0});
  [[noreturn]] void fail(const std::string& what);
  std::string processing_list(const std::string& queue, const std::string& consumer) const;

  redis_options m_opts;
  redisContext* m_ctx = nullptr;
  std::uint64_t m_generation = 0;
};

}  // namespace offload::broker
