#pragma once

/// @file
/// @brief Sending Celery tasks from C++: a named task with args, kwargs and Celery's options goes
/// to a Redis or RabbitMQ broker as Celery's own client sends it, and its result comes back from
/// the Redis result backend or through rpc:// as an offload::future.

#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include <offload/broker/celery/python_json.hpp>
#include <offload/broker/celery/result_document.hpp>
#include <offload/broker/celery/task_message.hpp>
#include <offload/future.hpp>

namespace offload::broker::celery {

/// What get() of a task that failed remotely throws: the Python exception's type, module and
/// message, and the worker's traceback text.
class remote_task_error : public std::runtime_error {
 public:
  remote_task_error(remote_exception e, std::string traceback)
      : std::runtime_error(e.type + ": " + e.text()),
        m_exception(std::move(e)),
        m_traceback(std::move(traceback)) {}
  const std::string& type() const noexcept { return m_exception.type; }  ///< e.g. "ValueError"
  std::string message() const { return m_exception.text(); }
  const std::optional<std::string>& module() const noexcept { return m_exception.module; }
  const std::string& traceback() const noexcept { return m_traceback; }
  const remote_exception& exception() const noexcept { return m_exception; }

 private:
  remote_exception m_exception;
  std::string m_traceback;
};

/// Celery's apply_async options.
struct send_options {
  std::string queue = "celery";
  std::optional<std::chrono::milliseconds> countdown;  ///< run no earlier than this from now
  std::optional<std::chrono::milliseconds> expires;    ///< revoked if not started by then
  int priority = 0;  ///< Redis: kombu's buckets, 0 first; RabbitMQ: 9 first (x-max-priority queues)
  std::optional<double> time_limit;       ///< seconds (hard)
  std::optional<double> soft_time_limit;  ///< seconds
};

struct client_options {
  std::string broker = "redis://127.0.0.1:6379/0";
  /// redis://…, or rpc:// with an amqp:// broker; empty: the broker's (Redis) or rpc:// (AMQP)
  std::string result_backend;
  std::chrono::milliseconds io_timeout{5000};
  /// RabbitMQ: queues this client declares (only those missing) get x-max-priority; 0: none.
  /// Use the Python app's task_queue_max_priority, or its own declaration fails (406) later.
  int queue_max_priority = 0;
  /// amqps://: the CA bundle the broker's certificate must chain to; empty: not verified.
  std::string ca_file;
};

/// Thread-safe. Redis backend: one thread receives every result (one SUBSCRIBE per task in flight,
/// then a GET once it is confirmed, so a result stored before the subscription took is not
/// missed); a lost connection is re-made and the results published meanwhile are read with GET.
/// RabbitMQ: one thread owns the AMQP connection, publishes the tasks and, with rpc://, consumes
/// this client's reply queue (results sent while that connection is down are lost, as they are
/// to Celery's own rpc:// client).
class client {
 public:
  /// Throws std::invalid_argument for an unusable URL or combination (rpc:// with Redis).
  explicit client(client_options options);
  ~client();  ///< the futures of tasks still in flight throw broker_error
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  /// Sends task `name`; the future holds its result as T (json: as sent), or throws
  /// remote_task_error (FAILURE, REVOKED) or, if the result is not a T, std::invalid_argument.
  /// Throws broker_error if the broker cannot take the task.
  template <class T = json>
  offload::future<T> send(const std::string& name,
                          json args = json::array(),
                          json kwargs = json::object(),
                          const send_options& options = {}) {
    auto p = std::make_shared<offload::promise<T>>();
    offload::future<T> f = p->get_future();
    send_raw(name,
             std::move(args),
             std::move(kwargs),
             options,
             [p](const result_document* doc, std::exception_ptr error) {
               if (doc == nullptr)
                 return p->set_exception(std::move(error));
               if (doc->status != task_status::success)
                 return p->set_exception(std::make_exception_ptr(remote_task_error(
                     remote_exception::from_json(doc->result), doc->traceback.value_or(""))));
               try {
                 if constexpr (std::is_void_v<T>)
                   p->set_value();
                 else
                   p->set_value(doc->result.template get<T>());
               } catch (const json::exception& e) {
                 p->set_exception(std::make_exception_ptr(
                     std::invalid_argument("celery client: the result " + dumps(doc->result) +
                                           " is not of the type asked for: " + e.what())));
               }
             });
    return f;
  }

 private:
  using completion = std::function<void(const result_document*, std::exception_ptr)>;
  void send_raw(const std::string& name,
                json args,
                json kwargs,
                const send_options& options,
                completion done);
  void send_amqp(const task_message& m, completion done);

  struct state;
  std::unique_ptr<state> m_state;
};

}  // namespace offload::broker::celery
