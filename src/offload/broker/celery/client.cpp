#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <offload/broker/celery/amqp_connection.hpp>
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
  bool amqp = false;         // the broker is RabbitMQ: amqp_io owns its connection
  bool rpc_backend = false;  // results come to reply_queue (rpc://)
  std::string reply_queue;   // rpc://: this client's, named by a UUID as Celery names its own

  std::mutex publish_mutex;                     // guards publisher
  std::unique_ptr<redis_connection> publisher;  // Redis broker

  // AMQP: a task to publish, handed to amqp_io; `sent` once the broker has it.
  struct amqp_publish {
    std::string queue;
    amqp_properties properties;
    std::string body;
    bool sent = false;  // mutex
  };
  std::deque<std::shared_ptr<amqp_publish>> to_publish;  // mutex
  int wake_fd = -1;                                      // eventfd: wakes amqp_io
  int listener_wake_fd = -1;  // eventfd: wakes the listener (Redis backend)
  std::thread amqp_io;

  // The listener thread owns `subscriber` and `reader`; the rest is shared under `mutex`.
  std::mutex mutex;
  std::condition_variable cv;
  struct pending {
    completion done;
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
      if (!rpc_backend)
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

  /// Wakes both threads: each looks at what is queued for it.
  void wake() const {
    const std::uint64_t one = 1;
    for (const int fd : {wake_fd, listener_wake_fd})
      if (fd >= 0) [[maybe_unused]]
        const ssize_t n = ::write(fd, &one, sizeof one);
  }

  /// AMQP: publishes what send_raw() queued (declaring each queue once, only if it is missing)
  /// and, with rpc://, reads the results that come to this client's reply queue.
  void amqp_loop() {
    std::unique_ptr<amqp_connection> c;
    std::unordered_set<std::string> declared;
    for (;;) {
      std::vector<std::shared_ptr<amqp_publish>> batch;
      {
        std::lock_guard lock(mutex);
        if (exit)
          return;
        batch.assign(to_publish.begin(), to_publish.end());
        to_publish.clear();
      }
      std::size_t i = 0;
      try {
        if (!c) {
          amqp_connection_options o;
          o.io_timeout = opts.io_timeout;
          o.ca_file = opts.ca_file;
          c = std::make_unique<amqp_connection>(broker, o);
          declared.clear();
          if (rpc_backend) {
            // As Celery's rpc backend declares it: gone with this client, or a day unused.
            c->ensure_queue(reply_queue, false, true, {{"x-expires", 86400000}});
            c->consume(reply_queue, true);
          }
        }
        for (; i < batch.size(); ++i) {
          const amqp_publish& p = *batch[i];
          if (declared.insert(p.queue).second) {
            json args = json::object();
            if (opts.queue_max_priority > 0)
              args["x-max-priority"] = opts.queue_max_priority;
            c->ensure_queue(p.queue, true, false, args);
          }
          c->publish("", p.queue, p.properties, p.body);
          std::lock_guard lock(mutex);
          batch[i]->sent = true;
        }
        if (!batch.empty())
          cv.notify_all();
        for (int n = 0; n < 64; ++n) {
          const std::optional<amqp_message> m = c->next();
          if (!m) {
            if (c->buffered())
              continue;
            break;
          }
          on_document(m->body);
        }
        pollfd fds[2] = {{c->fd(), POLLIN, 0}, {wake_fd, POLLIN, 0}};
        ::poll(fds, 2, 100);
        if ((fds[1].revents & POLLIN) != 0) {
          std::uint64_t n = 0;
          [[maybe_unused]] const ssize_t r = ::read(wake_fd, &n, sizeof n);
        }
      } catch (const broker_error&) {
        c.reset();
        {
          // Not sent yet: first again once connected (send_raw() gives up after io_timeout).
          std::lock_guard lock(mutex);
          to_publish.insert(
              to_publish.begin(), batch.begin() + static_cast<std::ptrdiff_t>(i), batch.end());
        }
        std::this_thread::sleep_for(100ms);
      }
    }
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
          // Until a message comes or send_raw() has a subscription for it (wake_fd).
          const std::optional<redis_reply> r =
              subscriber.next_push(sub.empty() ? 200ms : 0ms, listener_wake_fd);
          if (!r)
            break;
          if (r->size() == 3 && r->element_str(0) == "message") {
            on_document(r->element_str(2));
          } else if (r->size() == 3 && r->element_str(0) == "subscribe") {
            const std::string id(r->element_str(1).substr(meta_key("").size()));
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
  try {
    celery_endpoints e = parse_celery_endpoints(s.opts.broker, s.opts.result_backend);
    s.broker = std::move(e.broker);
    s.backend = std::move(e.backend);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("celery client: ") + e.what());
  }
  s.amqp = s.broker.scheme == broker_url::kind::amqp;
  s.rpc_backend = s.backend.scheme == broker_url::kind::rpc;
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0)
    host[0] = '\0';
  s.origin = std::to_string(::getpid()) + "@" + host;
  for (int* fd : {&s.wake_fd, &s.listener_wake_fd}) {
    *fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (*fd < 0)
      throw std::system_error(errno, std::generic_category(), "celery client: eventfd");
  }
  if (s.amqp) {
    s.reply_queue = uuid4();
    s.amqp_io = std::thread([&s] {
      s.amqp_loop();
    });
  } else {
    s.publisher = std::make_unique<redis_connection>(s.broker, 2000ms, s.opts.io_timeout);
  }
  if (!s.rpc_backend)
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
  s.wake();
  if (s.listener.joinable())
    s.listener.join();
  if (s.amqp_io.joinable())
    s.amqp_io.join();
  ::close(s.wake_fd);
  ::close(s.listener_wake_fd);
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
  m.reply_to = s.rpc_backend ? s.reply_queue : uuid4();
  m.priority = o.priority;
  m.delivery_tag = uuid4();
  m.exchange = "";
  m.routing_key = o.queue;
  if (s.amqp)
    return send_amqp(m, std::move(done));
  const std::string envelope = encode_redis_envelope(m);
  {
    // The listener subscribes; it reads the result with GET once subscribed, so a result
    // published before the subscription took is not missed, and sending need not wait for it.
    std::lock_guard lock(s.mutex);
    s.waiting.emplace(m.id, state::pending{std::move(done)});
    s.to_subscribe.push_back(m.id);
  }
  s.wake();
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

void client::send_amqp(const task_message& m, completion done) {
  state& s = *m_state;
  auto p = std::make_shared<state::amqp_publish>();
  p->queue = m.routing_key;
  p->properties.correlation_id = m.correlation_id;
  p->properties.reply_to = *m.reply_to;
  p->properties.priority = m.priority;
  p->properties.headers = encode_headers(m);
  p->body = encode_body(m);
  {
    std::unique_lock lock(s.mutex);
    s.waiting.emplace(m.id, state::pending{std::move(done)});
    if (!s.rpc_backend)
      s.to_subscribe.push_back(m.id);  // Redis backend: as in send_raw()
    s.to_publish.push_back(p);
  }
  s.wake();
  std::unique_lock lock(s.mutex);
  if (!s.cv.wait_for(lock, s.opts.io_timeout, [&] {
        return p->sent;
      })) {
    s.to_publish.erase(std::remove(s.to_publish.begin(), s.to_publish.end(), p),
                       s.to_publish.end());
    s.waiting.erase(m.id);
    if (!s.rpc_backend)
      s.to_unsubscribe.push_back(m.id);
    throw broker_error("celery client: " + s.broker.redacted() + " did not take task " + m.id +
                       " within " + std::to_string(s.opts.io_timeout.count()) + " ms");
  }
}

}  // namespace offload::broker::celery
