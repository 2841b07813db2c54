#include <condition_variable>
#include <mutex>
#include <thread>
#include <unordered_map>

#include <unistd.h>

#include <offload/broker/celery/broker_url.hpp>
#include <offload/broker/celery/client.hpp>
#include <offload/broker/celery/iso8601.hpp>
#include <offload/broker/celery/redis_connection.hpp>
#include <offload/broker/celery/task_message.hpp>
#include <offload/broker/celery/uuid.hpp>

namespace offload::broker::celery {
namespace {

using namespace std::chrono_literals;

std::string meta_key(const std::string& id) {
  return "celery-task-meta-" + id;
}

}  // namespace

struct client::state {
  client_options opts;
  broker_url broker;
  broker_url backend;
  std::string origin;

  std::mutex publish_mutex;  // guards publisher
  std::unique_ptr<redis_connection> publisher;

  // The listener thread owns `subscriber` and `reader`; the rest is shared under `mutex`.
  std::mutex mutex;
  std::condition_variable cv;
  struct pending {
    completion done;
    bool subscribed = false;
  };
  std::unordered_map<std::string, pending> waiting;  // mutex; by task id
  std::vector<std::string> to_subscribe;             // mutex
  std::vector<std::string> to_unsubscribe;           // mutex
  bool exit = false;                                 // mutex
  std::thread listener;

  void complete(const std::string& id, const result_document* doc, std::exception_ptr error) {
    completion done;
    {
      std::lock_guard lock(mutex);
      const auto it = waiting.find(id);
      if (it == waiting.end())
        return;
      done = std::move(it->second.done);
      waiting.erase(it);
      to_unsubscribe.push_back(id);
    }
    done(doc, std::move(error));
  }

  /// A stored or published document: completes its task if it is ready.
  void on_document(std::string_view text) {
    result_document doc;
    try {
      doc = decode_result(text);
    } catch (const std::invalid_argument&) {
      return;  // not a result document: not ours to judge
    }
    if (is_ready(doc.status))
      complete(doc.task_id, &doc, nullptr);
  }

  void listen() {
    redis_connection subscriber(backend, 2000ms, opts.io_timeout);
    redis_connection reader(backend, 2000ms, opts.io_timeout);
    for (;;) {
      std::vector<std::string> sub;
      std::vector<std::string> unsub;
      {
        std::lock_guard lock(mutex);
        if (exit)
          return;
        sub.swap(to_subscribe);
        unsub.swap(to_unsubscribe);
      }
      try {
        if (!subscriber.connected()) {
          const bool again = subscriber.generation() > 0;
          subscriber.command({"PING"});  // connects (not yet in subscriber mode)
          if (again) {
            // A new connection: subscribe again to everything in flight; the GET after each
            // confirmation reads what was stored while the connection was down.
            std::lock_guard lock(mutex);
            sub.clear();
            for (auto& [id, p] : waiting) sub.push_back(id);
          }
        }
        for (const std::string& id : sub) subscriber.send({"SUBSCRIBE", meta_key(id)});
        for (const std::string& id : unsub) subscriber.send({"UNSUBSCRIBE", meta_key(id)});
        for (;;) {
          const std::optional<redis_reply> r = subscriber.next_push(sub.empty() ? 20ms : 0ms);
          if (!r)
            break;
          if (r->size() == 3 && r->element_str(0) == "message") {
            on_document(r->element_str(2));
          } else if (r->size() == 3 && r->element_str(0) == "subscribe") {
            const std::string id(r->element_str(1).substr(meta_key("").size()));
            {
              std::lock_guard lock(mutex);
              if (const auto it = waiting.find(id); it != waiting.end())
                it->second.subscribed = true;
            }
            cv.notify_all();
            // Stored before the subscription took (a reconnect, or a fast worker): read it.
            const redis_reply stored = reader.command({"GET", meta_key(id)});
            if (stored.is_string())
              on_document(stored.str());
          }
        }
      } catch (const broker_error&) {
        subscriber.disconnect();
        reader.disconnect();
        std::this_thread::sleep_for(100ms);
      }
    }
  }
};

client::client(client_options options) : m_state(std::make_unique<state>()) {
  state& s = *m_state;
  s.opts = std::move(options);
  s.broker = parse_broker_url(s.opts.broker);
  if (s.broker.scheme != broker_url::kind::redis)
    throw std::invalid_argument("celery client: broker " + s.broker.redacted() +
                                " is not redis:// (RabbitMQ is not supported yet)");
  s.backend = s.opts.result_backend.empty() ? s.broker : parse_broker_url(s.opts.result_backend);
  if (s.backend.scheme != broker_url::kind::redis)
    throw std::invalid_argument("celery client: result backend " + s.backend.redacted() +
                                " is not redis://");
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0)
    host[0] = '\0';
  s.origin = std::to_string(::getpid()) + "@" + host;
  s.publisher = std::make_unique<redis_connection>(s.broker, 2000ms, s.opts.io_timeout);
  s.listener = std::thread([&s] {
    s.listen();
  });
}

client::~client() {
  state& s = *m_state;
  {
    std::lock_guard lock(s.mutex);
    s.exit = true;
  }
  s.listener.join();
  std::unordered_map<std::string, state::pending> left;
  {
    std::lock_guard lock(s.mutex);
    left.swap(s.waiting);
  }
  for (auto& [id, p] : left)
    p.done(nullptr,
           std::make_exception_ptr(
               broker_error("celery client: destroyed before the result of task " + id + " came")));
}

void client::send_raw(
    const std::string& name, json args, json kwargs, const send_options& o, completion done) {
  state& s = *m_state;
  if (!args.is_array())
    throw std::invalid_argument("celery client: args must be a JSON array, not " + dumps(args));
  if (!kwargs.is_object())
    throw std::invalid_argument("celery client: kwargs must be a JSON object, not " +
                                dumps(kwargs));
  if (name.empty())
    throw std::invalid_argument("celery client: the task name is empty");
  task_message m;
  m.task = name;
  m.id = uuid4();
  m.root_id = m.id;
  m.args = std::move(args);
  m.kwargs = std::move(kwargs);
  m.origin = s.origin;
  const wall_time now = wall_now();
  if (o.countdown)
    m.eta = format_iso8601_utc(now +
                               std::chrono::duration_cast<std::chrono::microseconds>(*o.countdown));
  if (o.expires)
    m.expires =
        format_iso8601_utc(now + std::chrono::duration_cast<std::chrono::microseconds>(*o.expires));
  m.time_limit_hard = o.time_limit;
  m.time_limit_soft = o.soft_time_limit;
  m.correlation_id = m.id;
  m.reply_to = uuid4();
  m.priority = o.priority;
  m.delivery_tag = uuid4();
  m.exchange = "";
  m.routing_key = o.queue;
  const std::string envelope = encode_redis_envelope(m);
  {
    // Subscribed before it is sent, so that no result is missed.
    std::unique_lock lock(s.mutex);
    s.waiting.emplace(m.id, state::pending{std::move(done), false});
    s.to_subscribe.push_back(m.id);
    if (!s.cv.wait_for(lock, s.opts.io_timeout, [&] {
          const auto it = s.waiting.find(m.id);
          return it == s.waiting.end() || it->second.subscribed;
        })) {
      s.waiting.erase(m.id);
      throw broker_error("celery client: " + s.backend.redacted() +
                         " did not confirm the subscription to the result of " + m.id);
    }
  }
  try {
    std::lock_guard lock(s.publish_mutex);
    s.publisher->command({"LPUSH", redis_priority_list(o.queue, o.priority), envelope});
  } catch (...) {
    std::lock_guard lock(s.mutex);
    s.waiting.erase(m.id);
    s.to_unsubscribe.push_back(m.id);
    throw;
  }
}

}  // namespace offload::broker::celery
