#pragma once

/// @file
/// @brief Celery's broker side over Redis, as kombu's Redis transport keeps it: priority lists,
/// the `unacked` hash and `unacked_index` sorted set that let any worker restore what a dead one
/// held, pub/sub fanout (events, control) and direct replies through `_kombu.binding.*`.

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <offload/broker/celery/python_json.hpp>
#include <offload/broker/celery/redis_connection.hpp>

namespace offload::broker::celery {

/// A kombu envelope for a message that is not a task (an event, a control reply): `body`
/// base64-encoded, in kombu's member order.
std::string kombu_envelope(std::string_view body,
                           const json& headers,
                           std::string_view exchange,
                           std::string_view routing_key,
                           int delivery_mode);

/// Channel prefix of fanout exchanges on the Redis database of `url`: "/<db>." (kombu's
/// keyprefix_fanout).
std::string fanout_prefix(const broker_url& url);

/// The names kombu uses (transport options `unacked_key`, `unacked_index_key`,
/// `unacked_mutex_key`); `owner_key` is offload's own: which worker holds each unacked tag, so a
/// restarted worker restores its own at once instead of after the visibility timeout.
struct redis_keys {
  std::string unacked = "unacked";
  std::string unacked_index = "unacked_index";
  std::string unacked_mutex = "unacked_mutex";
  std::string owner = "offload.unacked_owner";
};

/// A message taken from a queue and recorded as unacked.
struct held_message {
  std::string envelope;  ///< the list element as it was
  std::string tag;       ///< its delivery tag (properties.delivery_tag, or a fresh one)
  std::string list;      ///< the list it came from
};

class redis_broker {
 public:
  redis_broker(redis_connection& conn, redis_keys keys = {})
      : m_conn(conn), m_keys(std::move(keys)) {}

  /// Takes up to `max` messages of `queues` (bucket 0 of every queue first, then 3, 6, 9) and
  /// records each in `unacked`/`unacked_index` (score `now`, seconds) under `owner`, atomically
  /// (one script): a crash at any point leaves each message either in its list or recorded.
  /// With `wait_first`, the pop first waits up to that long for the first queue's bucket 0 to
  /// have a message (Redis blocks on one list without removing from it), in the same round trip.
  /// Empty: every list was empty.
  std::vector<held_message> pop(const std::vector<std::string>& queues,
                                double now,
                                std::string_view owner,
                                std::size_t max = 1,
                                std::chrono::milliseconds wait_first = {});
  /// Forgets a held message (kombu's ack: ZREM + HDEL).
  void ack(std::string_view tag);
  /// Pushes `envelope` to the list of `priority` in `queue` and, when `ack_tag` is not empty,
  /// acks that tag in the same transaction (a retry: the copy is queued, then the original goes).
  void publish(std::string_view queue,
               int priority,
               std::string_view envelope,
               std::string_view ack_tag = {});
  /// Moves the score of held messages to `now` (seconds), so nobody restores what is still held
  /// (an ETA task waiting past the visibility timeout).
  void refresh(const std::vector<std::string>& tags, double now);
  /// Puts back at the consuming end, marked redelivered, every unacked message recorded before
  /// `older_than` (seconds) and, if `owner` is not empty, every one held by `owner`. Guarded by
  /// `unacked_mutex` as kombu guards it; a message is restored once even without it. Returns how
  /// many.
  std::size_t restore(double older_than, std::string_view owner = {});

  /// Fanout publish (pub/sub): channel `/<db>.<exchange>/<routing_key>`.
  void fanout(std::string_view exchange, std::string_view routing_key, std::string_view envelope);
  /// A direct-exchange publish as kombu does it: the lists bound to `exchange` with
  /// `routing_key` (from `_kombu.binding.<exchange>`) get `envelope`. Returns how many lists.
  std::size_t publish_direct(std::string_view exchange,
                             std::string_view routing_key,
                             std::string_view envelope);

  /// Channel prefix of fanout exchanges: "/<db>.".
  std::string fanout_prefix() const;
  redis_connection& connection() noexcept { return m_conn; }

 private:
  std::vector<std::string> bound_queues(std::string_view exchange, std::string_view routing_key);

  redis_connection& m_conn;
  redis_keys m_keys;
};

}  // namespace offload::broker::celery
