#pragma once
/// @file
/// @brief Celery's result documents: what the Redis backend stores at
/// `celery-task-meta-<id>` (and PUBLISHes on the channel of that name), and what the rpc://
/// backend sends to a task's `reply_to`.

#include <optional>
#include <string>
#include <string_view>

#include <offload/broker/celery/python_json.hpp>

namespace offload::broker::celery {

/// celery.states, as the text Celery writes ("SUCCESS", ...).
enum class task_status { pending, received, started, retry, success, failure, revoked, rejected };

std::string_view to_string(task_status s) noexcept;
/// Throws std::invalid_argument for a text that is not one of Celery's states (they are upper
/// case: "success" is not a state, and Celery's client waits forever on it).
task_status parse_task_status(std::string_view text);
/// SUCCESS, FAILURE and REVOKED: what AsyncResult.get() returns or raises on.
bool is_ready(task_status s) noexcept;

/// A Python exception as the JSON serializer carries it: {"exc_type", "exc_message",
/// "exc_module"}; the client re-raises `exc_module.exc_type(*exc_message)`.
struct remote_exception {
  std::string type;                   ///< e.g. "ValueError", "NotRegistered"
  json message = json::array();       ///< the exception's args (usually one string)
  std::optional<std::string> module;  ///< e.g. "builtins", "celery.exceptions"; null if none

  json to_json() const;
  /// Throws std::invalid_argument if `v` is not an exception dict.
  static remote_exception from_json(const json& v);
  /// The first message argument as text (a string as is, anything else as JSON).
  std::string text() const;
};

struct result_document {
  task_status status = task_status::pending;
  json
      result;  ///< the value; for RETRY/FAILURE/REVOKED the exception dict; STARTED {pid, hostname}
  std::optional<std::string> traceback;
  json children = json::array();
  std::optional<std::string> date_done;  ///< naive UTC ISO 8601; set for the ready states
  std::optional<std::string> group_id;
  std::optional<std::string> parent_id;
  std::string task_id;

  /// Shorthands for the documents a worker writes; `date_done` is the caller's (Celery's format:
  /// format_iso8601_naive()).
  static result_document success(std::string task_id, json value, std::string date_done);
  static result_document failure(std::string task_id,
                                 remote_exception e,
                                 std::optional<std::string> traceback,
                                 std::string date_done);
  static result_document retry(std::string task_id,
                               remote_exception e,
                               std::optional<std::string> traceback);
  static result_document revoked(std::string task_id, std::string reason, std::string date_done);
};

/// The Redis backend's text: status, result, traceback, children, date_done, [group_id,]
/// [parent_id,] task_id, as json.dumps writes it.
std::string encode_redis_result(const result_document& d);
/// The rpc:// backend's text: task_id, status, result, traceback, children.
std::string encode_rpc_result(const result_document& d);
/// Reads either form. Throws std::invalid_argument naming what is wrong (no task_id, a state
/// that is not Celery's, an exception state whose result is not an exception dict).
result_document decode_result(std::string_view text);

}  // namespace offload::broker::celery
