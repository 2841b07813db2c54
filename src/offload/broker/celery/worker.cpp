#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include <unistd.h>

#include <offload/broker/celery/amqp_worker_link.hpp>
#include <offload/broker/celery/base64.hpp>
#include <offload/broker/celery/broker_url.hpp>
#include <offload/broker/celery/iso8601.hpp>
#include <offload/broker/celery/redis_broker.hpp>
#include <offload/broker/celery/result_document.hpp>
#include <offload/broker/celery/uuid.hpp>
#include <offload/broker/celery/worker.hpp>
#include <offload/this_task.hpp>
#include <offload/version.hpp>

namespace offload::broker::celery {
namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;
using command = std::vector<std::string>;

double unix_seconds(wall_time t) {
  return static_cast<double>(t.time_since_epoch().count()) / 1e6;
}

/// An exception as Python's repr() shows it in events: `ValueError("no")`.
std::string python_repr(const remote_exception& ex) {
  return ex.type + "(" + dumps(ex.message.size() == 1 ? ex.message[0] : ex.message) + ")";
}

/// The queue a priority list belongs to: "celery\x06\x163" → "celery".
std::string queue_of_list(const std::string& list) {
  const std::size_t sep = list.rfind("\x06\x16");
  return sep == std::string::npos ? list : list.substr(0, sep);
}

std::string default_hostname() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0')
    return "celery-cpp@localhost";
  return std::string("celery-cpp@") + host;
}

std::vector<redis_connection::args> argv_of(const std::vector<command>& cmds) {
  std::vector<redis_connection::args> argv;
  argv.reserve(cmds.size());
  for (const command& cmd : cmds) argv.emplace_back(cmd.begin(), cmd.end());
  return argv;
}

template <class T>
void append_all(std::vector<T>& to, std::vector<T>& from) {
  for (T& x : from) to.push_back(std::move(x));
  from.clear();
}

/// Ids revoked by remote control, as Celery's LimitedSet: the newest `capacity` are kept.
class revoked_ids {
 public:
  explicit revoked_ids(std::size_t capacity) : m_capacity(capacity) {}
  void add(const std::string& id) {
    std::lock_guard lock(m_mutex);
    if (!m_ids.insert(id).second)
      return;
    m_order.push_back(id);
    if (m_order.size() > m_capacity) {
      m_ids.erase(m_order.front());
      m_order.pop_front();
    }
  }
  bool contains(const std::string& id) const {
    std::lock_guard lock(m_mutex);
    return m_ids.count(id) != 0;
  }
  std::vector<std::string> snapshot() const {
    std::lock_guard lock(m_mutex);
    return {m_order.begin(), m_order.end()};
  }

 private:
  mutable std::mutex m_mutex;
  std::unordered_set<std::string> m_ids;
  std::deque<std::string> m_order;
  std::size_t m_capacity;
};

}  // namespace

/// One message in hand, from pop to ack.
struct held_task {
  held_message held;
  task_message msg;
  std::uint64_t amqp_tag = 0;    ///< AMQP: the delivery tag to ack
  std::uint64_t generation = 0;  ///< AMQP: the connection it came on
  const registered_task* task = nullptr;
  bool eta = false;           ///< waiting for its ETA (counted in eta_held, not busy)
  offload::future<void> run;  // hand_mutex (set by the consumer after submit)
  wall_time received{};
  bool soft_expired = false;       // hand_mutex: the soft time limit passed before `run` was set
  std::atomic<bool> ended{false};  // the first finish_* claims the message; a late one drops
};

/// What one step of a message's life sends, in order: results to the backend first, then what
/// goes to the broker (a Redis broker's commands, or AMQP ops: rpc:// results, acks, events).
struct outgoing {
  std::vector<command> backend;  ///< to a Redis result backend
  std::vector<command> broker;   ///< to a Redis broker
  std::vector<amqp_op> amqp;     ///< to an AMQP broker, through the link
  /// A task's end event: stamped and sent after the rest (see report_mutex's members).
  std::optional<json> end_event;
};

/// The AMQP properties of a task message as Celery's producer sets them.
amqp_properties task_properties(const task_message& m) {
  amqp_properties p;
  p.content_type = m.content_type;
  p.content_encoding = m.content_encoding;
  p.correlation_id = m.correlation_id.empty() ? m.id : m.correlation_id;
  p.reply_to = m.reply_to.value_or("");
  p.delivery_mode = m.delivery_mode;
  p.priority = m.priority;
  p.headers = encode_headers(m);
  return p;
}

struct worker::state {
  state(offload::executor& e, const task_registry& t, worker_options o)
      : executor(e), tasks(t), opts(std::move(o)), events(opts.task_events) {}

  offload::executor& executor;
  const task_registry& tasks;
  worker_options opts;
  broker_url broker;
  broker_url backend;
  bool backend_is_broker = true;  // Redis broker and backend on one database: one connection
  bool amqp = false;              // the broker is RabbitMQ: the link below owns its connection
  bool rpc_backend = false;       // results go to each message's reply_to (rpc://)
  std::unique_ptr<amqp_worker_link> link;
  redis_keys keys;  // the names redis_broker uses; acks queued for the reporter name them too
  std::string hostname;
  int pid = static_cast<int>(::getpid());
  steady::time_point started = steady::now();

  // Commands waiting for the reporter thread, which owns the connections that send them.
  // Backend commands go before broker commands: a result is stored before its message is acked.
  std::mutex report_mutex;  // guards the two lists and reporter_exit
  std::condition_variable report_cv;
  std::vector<command> backend_cmds;
  std::vector<command> broker_cmds;
  std::vector<amqp_op> amqp_ops;
  // Whoever holds send_mutex sends (the reporter, or a thread that ended a task: report_now()):
  // the Redis connections, and what was taken from the lists above but not yet sent, in order.
  std::mutex send_mutex;
  std::unique_ptr<redis_connection> broker_conn;   // send_mutex; Redis broker only
  std::unique_ptr<redis_connection> backend_conn;  // send_mutex; a Redis backend of its own
  std::unique_ptr<redis_broker> sender_rb;         // send_mutex; over broker_conn
  std::vector<command> sending_backend;            // send_mutex
  outgoing sending;                                // send_mutex: broker and amqp parts
  std::vector<json> sending_end;                   // send_mutex
  // A task's end event (succeeded, failed, retried, revoked), sent after the commands queued with
  // it and stamped when sent, so its timestamp is taken after the task's result is stored (as
  // Celery's are): task-received to task-succeeded is the worker's time with the message in hand.
  std::vector<json> end_events;
  bool reporter_exit = false;
  struct time_limit {
    std::weak_ptr<held_task> task;
    bool hard = false;
    double seconds = 0;
  };
  std::multimap<steady::time_point, time_limit> limits;  // report_mutex; due first

  // Messages in hand, by delivery tag.
  mutable std::mutex hand_mutex;  // guards hand
  std::condition_variable slot_cv;
  std::unordered_map<std::string, std::shared_ptr<held_task>> hand;
  std::atomic<unsigned> busy{0};  // ready or running (hand_mutex for waits on slot_cv)
  // Calls given to the executor and not yet run or dropped by it: a task past its hard time
  // limit leaves the hand but keeps running, and still uses this state when it returns.
  std::atomic<std::uint64_t> calls{0};
  std::atomic<unsigned> eta_held{0};  // waiting for an ETA

  revoked_ids revoked{50000};
  std::atomic<bool> events;             // task-* events on (worker-* events are always sent)
  std::atomic<std::uint64_t> clock{0};  // Lamport clock of events and control replies

  struct counters {
    std::atomic<std::uint64_t> received{0}, succeeded{0}, failed{0}, retried{0}, revoked{0},
        rejected{0}, restored{0}, reconnects{0};
  } count;
  std::mutex total_mutex;                      // guards total
  std::map<std::string, std::uint64_t> total;  // runs per task name (stats.total)

  std::atomic<bool> fatal{false};
  std::string fatal_what;  // written before fatal is set (release), read after (acquire)

  unsigned prefetch() const { return opts.prefetch; }

  void log(const std::string& line) const {
    std::cerr << "celery_worker " << hostname << ": " << line << "\n";
  }

  /// Queues `o` for the reporter (`notify`: woken for it).
  void report(outgoing o, bool notify = true) {
    {
      std::lock_guard lock(report_mutex);
      append_all(backend_is_broker && !amqp ? broker_cmds : backend_cmds, o.backend);
      append_all(broker_cmds, o.broker);
      append_all(amqp_ops, o.amqp);
      if (o.end_event)
        end_events.push_back(std::move(*o.end_event));
    }
    if (notify)
      report_cv.notify_one();
  }

  // ---- documents and events ----

  /// SETEX (SET without result_expires) and PUBLISH of the document, encoded once.
  std::vector<command> store_and_publish(const result_document& d) const {
    const std::string key = "celery-task-meta-" + d.task_id;
    std::string doc = encode_redis_result(d);
    command store = opts.result_expires.count() > 0
                        ? command{"SETEX", key, std::to_string(opts.result_expires.count()), doc}
                        : command{"SET", key, doc};
    return {std::move(store), {"PUBLISH", key, std::move(doc)}};
  }
  std::vector<command> ack(const std::string& tag) const {
    return {
        {"ZREM", keys.unacked_index, tag}, {"HDEL", keys.unacked, tag}, {"HDEL", keys.owner, tag}};
  }

  /// A result stored where the backend keeps it: Redis (SETEX + PUBLISH), or rpc:// (a message
  /// to the sender's reply queue; none when the message named no reply_to, as Celery does).
  void add_result(outgoing& o,
                  const result_document& d,
                  const std::optional<std::string>& reply_to,
                  const std::string& correlation_id) const {
    if (!rpc_backend) {
      for (auto& c : store_and_publish(d)) o.backend.push_back(std::move(c));
      return;
    }
    if (!reply_to || reply_to->empty())
      return;
    amqp_op op;
    op.routing_key = *reply_to;
    op.properties.correlation_id = correlation_id.empty() ? d.task_id : correlation_id;
    op.properties.delivery_mode = 1;
    op.body = encode_rpc_result(d);
    o.amqp.push_back(std::move(op));
  }
  void add_result(outgoing& o, const result_document& d, const task_message& m) const {
    add_result(o, d, m.reply_to, m.correlation_id);
  }
  /// The message is done with: forgotten by the broker.
  void add_ack(outgoing& o, const std::string& tag, std::uint64_t amqp_tag, std::uint64_t gen) {
    if (!amqp) {
      for (auto& c : ack(tag)) o.broker.push_back(std::move(c));
      return;
    }
    amqp_op op;
    op.what = amqp_op::kind::ack;
    op.tag = amqp_tag;
    op.generation = gen;
    o.amqp.push_back(std::move(op));
  }
  void add_ack(outgoing& o, const held_task& h) {
    add_ack(o, h.held.tag, h.amqp_tag, h.generation);
  }
  /// An event, stamped now: to `/<db>.celeryev/<key>` on Redis, to topic exchange `celeryev`
  /// on RabbitMQ, the routing key being its type with '-' as '.'.
  void add_event(outgoing& o, json e) {
    if (!amqp) {
      o.broker.push_back(publish_event(std::move(e)));
      return;
    }
    e["timestamp"] = unix_seconds(wall_now());
    amqp_op op;
    op.exchange = "celeryev";
    op.routing_key = e["type"].get<std::string>();
    std::replace(op.routing_key.begin(), op.routing_key.end(), '-', '.');
    op.properties.delivery_mode = 1;
    op.properties.headers = {{"hostname", hostname}};
    op.body = dumps(e);
    o.amqp.push_back(std::move(op));
  }
  /// `notify`: the reporter is woken for it; else it goes with the next send (write_ahead(), a
  /// task's end, the reporter's next round: within a heartbeat).
  void report_event(json e, bool notify = true) {
    outgoing o;
    add_event(o, std::move(e));
    report(std::move(o), notify);
  }

  json event(std::string type) {
    json e = json::object();
    e["hostname"] = hostname;
    e["utcoffset"] = 0;
    e["pid"] = pid;
    e["clock"] = clock.fetch_add(1, std::memory_order_relaxed) + 1;
    e["type"] = std::move(type);
    return e;
  }
  command publish_event(json e) {
    e["timestamp"] = unix_seconds(wall_now());
    std::string type = e["type"].get<std::string>();
    std::string key = type;
    for (char& c : key)
      if (c == '-')
        c = '.';
    const std::string channel = fanout_prefix(broker) + "celeryev/" + key;
    return {"PUBLISH",
            channel,
            kombu_envelope(dumps(e), json{{"hostname", hostname}}, "celeryev", key, 1)};
  }
  json worker_event(const char* type) {
    json e = event(type);
    e["freq"] = static_cast<double>(opts.heartbeat.count()) / 1000.0;
    e["active"] = busy.load(std::memory_order_relaxed);
    e["processed"] = count.received.load(std::memory_order_relaxed);
    double load[3] = {0, 0, 0};
    if (::getloadavg(load, 3) != 3)
      load[0] = load[1] = load[2] = 0;
    e["loadavg"] = json::array({std::round(load[0] * 100) / 100,
                                std::round(load[1] * 100) / 100,
                                std::round(load[2] * 100) / 100});
    e["sw_ident"] = "offload-celery";
    e["sw_ver"] = std::to_string(OFFLOAD_VERSION_MAJOR) + "." +
                  std::to_string(OFFLOAD_VERSION_MINOR) + "." +
                  std::to_string(OFFLOAD_VERSION_PATCH);
    e["sw_sys"] = "Linux";
    return e;
  }
  /// A task's end event for report(), or nothing while task events are off.
  std::optional<json> end_event(const char* type, const task_message& m) {
    if (!events.load(std::memory_order_relaxed))
      return std::nullopt;
    return task_event_base(type, m);
  }
  json task_event_base(const char* type, const task_message& m) {
    json e = event(type);
    e["uuid"] = m.id;
    return e;
  }

  // ---- a message's end ----

  /// Drops a message from the hand and frees its slot. The caller has queued its ack.
  void release(const std::shared_ptr<held_task>& h) {
    // Notified with the lock held: run() may return, and the worker go, as soon as the hand is
    // empty, so this thread touches nothing of it after unlocking.
    std::lock_guard lock(hand_mutex);
    hand.erase(h->held.tag);
    busy.fetch_sub(1, std::memory_order_relaxed);
    slot_cv.notify_all();
  }

  /// The first end of a message wins; a task's result after its hard time limit is dropped.
  bool claim(const std::shared_ptr<held_task>& h) {
    if (!h->ended.exchange(true, std::memory_order_acq_rel))  // pairs with itself: one winner
      return true;
    log("the result of task " + h->msg.id + " came after its hard time limit: discarded");
    return false;
  }

  void finish_revoked(const std::shared_ptr<held_task>& h, bool expired) {
    if (!claim(h))
      return;
    const task_message& m = h->msg;
    outgoing o;
    if (!m.ignore_result)
      add_result(o,
                 result_document::revoked(
                     m.id, expired ? "expired" : "revoked", format_iso8601_naive(wall_now())),
                 m);
    add_ack(o, *h);
    o.end_event = end_event("task-revoked", m);
    if (o.end_event) {
      (*o.end_event)["terminated"] = false;
      (*o.end_event)["signum"] = nullptr;
      (*o.end_event)["expired"] = expired;
    }
    count.revoked.fetch_add(1, std::memory_order_relaxed);
    report_now(std::move(o));
    release(h);
  }

  void finish_failure(const std::shared_ptr<held_task>& h,
                      const remote_exception& ex,
                      std::optional<std::string> traceback) {
    if (!claim(h))
      return;
    const task_message& m = h->msg;
    outgoing o;
    if (!m.ignore_result) {
      result_document d =
          result_document::failure(m.id, ex, traceback, format_iso8601_naive(wall_now()));
      d.parent_id = m.parent_id;
      d.group_id = m.group;
      add_result(o, d, m);
    }
    add_ack(o, *h);
    o.end_event = end_event("task-failed", m);
    if (o.end_event) {
      (*o.end_event)["exception"] = python_repr(ex);
      (*o.end_event)["traceback"] = traceback ? json(*traceback) : json(nullptr);
    }
    count.failed.fetch_add(1, std::memory_order_relaxed);
    report_now(std::move(o));
    release(h);
  }

  void finish_success(const std::shared_ptr<held_task>& h, json value, double runtime) {
    if (!claim(h))
      return;
    const task_message& m = h->msg;
    outgoing o;
    o.end_event = end_event("task-succeeded", m);
    if (o.end_event) {
      (*o.end_event)["result"] = dumps(value);
      (*o.end_event)["runtime"] = runtime;
    }
    if (!m.ignore_result) {
      result_document d =
          result_document::success(m.id, std::move(value), format_iso8601_naive(wall_now()));
      d.parent_id = m.parent_id;
      d.group_id = m.group;
      add_result(o, d, m);
    }
    add_ack(o, *h);
    count.succeeded.fetch_add(1, std::memory_order_relaxed);
    report_now(std::move(o));
    release(h);
  }

  /// The message sent again with the same id and retries + 1, due after `delay`; the original
  /// acked in the same transaction; RETRY stored.
  void finish_retry(const std::shared_ptr<held_task>& h,
                    const remote_exception& ex,
                    std::chrono::milliseconds delay) {
    if (!claim(h))
      return;
    const task_message& m = h->msg;
    task_message again = m;
    again.retries = m.retries + 1;
    again.eta = format_iso8601_utc(wall_now() +
                                   std::chrono::duration_cast<std::chrono::microseconds>(delay));
    again.parent_id = m.id;
    again.delivery_tag = uuid4();
    again.redelivered = false;
    again.extra_headers.erase("redelivered");
    outgoing o;
    if (!m.ignore_result) {
      const std::string traceback =
          "Retry in " + std::to_string(delay.count()) + " ms: " + ex.type + ": " + ex.text();
      add_result(o, result_document::retry(m.id, ex, traceback), m);
    }
    if (amqp) {
      // To where it came from (Celery's retry keeps the delivery's exchange and routing key),
      // then the original acked: at worst both are delivered, never neither.
      amqp_op copy;
      copy.exchange = m.exchange;
      copy.routing_key = m.routing_key;
      copy.properties = task_properties(again);
      copy.body = encode_body(again);
      o.amqp.push_back(std::move(copy));
      add_ack(o, *h);
    } else {
      const std::string queue = queue_of_list(h->held.list);
      o.broker = {{"MULTI"},
                  {"LPUSH", redis_priority_list(queue, m.priority), encode_redis_envelope(again)}};
      add_ack(o, *h);
      o.broker.push_back({"EXEC"});
    }
    o.end_event = end_event("task-retried", m);
    if (o.end_event) {
      (*o.end_event)["exception"] = python_repr(ex);
      (*o.end_event)["traceback"] = nullptr;
    }
    count.retried.fetch_add(1, std::memory_order_relaxed);
    report_now(std::move(o));
    release(h);
  }

  /// A message that cannot be read: its raw bytes to "<queue>.dead" with the reason, FAILURE
  /// stored where an id was read, acked. Nothing of it runs.
  /// On RabbitMQ `am` is the delivery (its headers go to the dead letter too) and "<queue>.dead"
  /// is a queue.
  void reject_malformed(const held_message& held,
                        const malformed_message& e,
                        const amqp_message* am = nullptr,
                        std::uint64_t gen = 0) {
    const std::string queue = queue_of_list(held.list);
    log("rejected a malformed message from '" + queue + "': " + e.what());
    outgoing o;
    if (!e.task_id().empty()) {
      const remote_exception ex{
          "ValueError", json::array({std::string("malformed message: ") + e.what()}), "builtins"};
      const result_document d =
          result_document::failure(e.task_id(), ex, std::nullopt, format_iso8601_naive(wall_now()));
      if (am != nullptr)
        add_result(o, d, am->delivery.reply_to, am->delivery.correlation_id.value_or(""));
      else
        add_result(o, d, std::nullopt, "");
    }
    json dead = json::object();
    dead["reason"] = e.what();
    dead["hostname"] = hostname;
    dead["message"] = am != nullptr ? am->body : held.envelope;
    if (am != nullptr) {
      dead["headers"] = am->delivery.headers;
      dead["content_type"] = am->delivery.content_type ? json(*am->delivery.content_type) : json();
      amqp_op op;
      op.routing_key = queue + ".dead";
      op.body = dumps(dead);
      o.amqp.push_back(std::move(op));
      add_ack(o, held.tag, am->tag, gen);
    } else {
      o.broker.push_back({"LPUSH", queue + ".dead", dumps(dead)});
      add_ack(o, held.tag, 0, 0);
    }
    count.rejected.fetch_add(1, std::memory_order_relaxed);
    report(std::move(o));
  }

  // ---- running ----

  void execute(const std::shared_ptr<held_task>& h) {
    const task_message& m = h->msg;
    if (h->eta) {
      // Due now: it takes a slot like any ready task.
      std::lock_guard lock(hand_mutex);
      eta_held.fetch_sub(1, std::memory_order_relaxed);
      busy.fetch_add(1, std::memory_order_relaxed);
      h->eta = false;
    }
    if (revoked.contains(m.id))
      return finish_revoked(h, false);
    if (m.expires && wall_now() >= parse_iso8601(*m.expires))
      return finish_revoked(h, true);
    if (events.load(std::memory_order_relaxed)) {
      // Redis: written now by this thread, with the task-received before it, unread (no wait,
      // no hand-off); RabbitMQ: posting to the link is as cheap, through the reporter.
      report_event(task_event_base("task-started", m), amqp);
      if (!amqp)
        write_ahead();
    }
    arm_time_limits(h);
    {
      std::lock_guard lock(total_mutex);
      ++total[m.task];
    }
    task_request req{m.id, m.task, m.retries, hostname, m.parent_id, m.root_id};
    const auto t0 = steady::now();
    std::exception_ptr error;
    std::optional<std::chrono::milliseconds> countdown;
    bool asked = false;
    try {
      json value = h->task->call(req, m.args, m.kwargs);
      const double runtime = std::chrono::duration<double>(steady::now() - t0).count();
      return finish_success(h, std::move(value), runtime);
    } catch (const retry& r) {
      error = std::current_exception();
      countdown = r.countdown();
      asked = true;
    } catch (const offload::retry_request& r) {
      error = std::current_exception();
      countdown = std::chrono::duration_cast<std::chrono::milliseconds>(r.delay());
      asked = true;
    } catch (...) {
      error = std::current_exception();
    }
    const retry_policy& p = h->task->options.retry;
    const auto attempts = static_cast<unsigned long long>(m.retries) + 1;
    bool again = attempts < p.max_attempts && (asked || p.max_attempts > 1);
    if (again && !asked && p.retry_if) {
      try {
        again = p.retry_if(error);
      } catch (...) {
        again = false;
      }
    }
    const remote_exception ex = to_remote_exception(error);
    if (again) {
      if (!countdown) {
        thread_local std::mt19937_64 gen{std::random_device{}()};
        const double u = std::uniform_real_distribution<double>(0, 1)(gen);
        countdown = std::chrono::duration_cast<std::chrono::milliseconds>(
            retry_delay(p, static_cast<unsigned>(attempts), u));
      }
      return finish_retry(h, ex, *countdown);
    }
    const std::string traceback = "Traceback (C++ task " + m.task + " on " + hostname + "):\n" +
                                  ex.type + ": " + ex.text() + "\n";
    finish_failure(h, ex, traceback);
  }

  /// A message just taken: decides what becomes of it. Runs on the consumer thread (Redis) or
  /// the link's (RabbitMQ: `am` is the delivery, `gen` its connection).
  void accept(held_message held, const amqp_message* am = nullptr, std::uint64_t gen = 0) {
    count.received.fetch_add(1, std::memory_order_relaxed);
    auto h = std::make_shared<held_task>();
    try {
      h->msg = am != nullptr ? decode_amqp(am->delivery, am->body, opts.limits)
                             : decode_redis_envelope(held.envelope, opts.limits);
    } catch (const malformed_message& e) {
      return reject_malformed(held, e, am, gen);
    }
    if (am != nullptr) {
      h->amqp_tag = am->tag;
      h->generation = gen;
    }
    h->held = std::move(held);
    h->received = wall_now();
    const task_message& m = h->msg;
    h->task = tasks.find(m.task);
    {
      std::lock_guard lock(hand_mutex);
      hand.emplace(h->held.tag, h);
      busy.fetch_add(1, std::memory_order_relaxed);
    }
    if (events.load(std::memory_order_relaxed)) {
      json e = task_event_base("task-received", m);
      e["name"] = m.task;
      e["args"] = m.argsrepr ? *m.argsrepr : dumps(m.args);
      e["kwargs"] = m.kwargsrepr ? *m.kwargsrepr : dumps(m.kwargs);
      e["root_id"] = m.root_id ? json(*m.root_id) : json(nullptr);
      e["parent_id"] = m.parent_id ? json(*m.parent_id) : json(nullptr);
      e["retries"] = m.retries;
      e["eta"] = m.eta ? json(*m.eta) : json(nullptr);
      e["expires"] = m.expires ? json(*m.expires) : json(nullptr);
      // Queued before the task can start: events leave in the order they happen. On Redis a task
      // that runs now takes it along with its task-started (write_ahead()); else the reporter.
      const bool runs_now = !m.eta || parse_iso8601(*m.eta) <= h->received;
      report_event(std::move(e), amqp || !runs_now);
    }
    if (h->task == nullptr) {
      log("unknown task '" + m.task + "' (id " + m.id + "): FAILURE NotRegistered");
      return finish_failure(
          h,
          remote_exception{"NotRegistered", json::array({m.task}), "celery.exceptions"},
          std::nullopt);
    }
    if (revoked.contains(m.id))
      return finish_revoked(h, false);
    if (m.expires && h->received >= parse_iso8601(*m.expires))
      return finish_revoked(h, true);
    offload::task_options o;
    o.lane = h->task->options.lane;
    o.name = h->task->options.name;
    o.rate = h->task->options.rate;
    if (m.eta) {
      const wall_time due = parse_iso8601(*m.eta);
      if (due > h->received) {
        o.delay = std::chrono::duration_cast<offload::clock::duration>(due - h->received);
        std::lock_guard lock(hand_mutex);
        h->eta = true;
        busy.fetch_sub(1, std::memory_order_relaxed);
        eta_held.fetch_add(1, std::memory_order_relaxed);
      }
    }
    // Counts this call until the executor has run or dropped it (~worker waits for 0).
    calls.fetch_add(1, std::memory_order_relaxed);
    std::shared_ptr<void> call_token(nullptr, [this](void*) {
      calls.fetch_sub(1, std::memory_order_release);  // pairs with the acquire in ~worker()
    });
    try {
      offload::future<void> run = executor.submit(o, [this, h, call_token] {
        try {
          execute(h);
        } catch (...) {  // a bug of the worker's own, not of the task: the message still ends
          log("internal error running task " + h->msg.id);
          finish_failure(h, to_remote_exception(std::current_exception()), std::nullopt);
        }
      });
      std::lock_guard lock(hand_mutex);
      h->run = std::move(run);
      if (h->soft_expired)
        h->run.cancel();
    } catch (const std::exception& e) {
      // The executor refused it (shutting down): leave it unacked, restored at exit.
      log(std::string("the executor refused task ") + m.id + ": " + e.what());
      std::lock_guard lock(hand_mutex);
      (h->eta ? eta_held : busy).fetch_sub(1, std::memory_order_relaxed);
      hand.erase(h->held.tag);
    }
  }

  /// `timelimit: [hard, soft]` from the task's start: the soft limit cancels its future (the
  /// task sees this_task::stop_requested(), and its sleeps end early); the hard limit stores
  /// FAILURE TimeLimitExceeded and acks, and what the task returns later is dropped (a running
  /// C++ function cannot be killed: it keeps its executor worker until it returns).
  void arm_time_limits(const std::shared_ptr<held_task>& h) {
    const task_message& m = h->msg;
    const auto at = [](double s) {
      return steady::now() + std::chrono::duration_cast<steady::duration>(
                                 std::chrono::duration<double>(std::min(s, 1e9)));
    };
    bool armed = false;
    {
      std::lock_guard lock(report_mutex);
      if (m.time_limit_soft && *m.time_limit_soft > 0) {
        limits.emplace(at(*m.time_limit_soft), time_limit{h, false, *m.time_limit_soft});
        armed = true;
      }
      if (m.time_limit_hard && *m.time_limit_hard > 0) {
        limits.emplace(at(*m.time_limit_hard), time_limit{h, true, *m.time_limit_hard});
        armed = true;
      }
    }
    if (armed)
      report_cv.notify_one();
  }

  /// Runs on the reporter thread: the limits that are due.
  void enforce_time_limits(std::vector<time_limit> due) {
    for (const time_limit& l : due) {
      const std::shared_ptr<held_task> h = l.task.lock();
      if (!h || h->ended.load(std::memory_order_acquire))  // pairs with claim()
        continue;
      if (!l.hard) {
        std::lock_guard lock(hand_mutex);
        h->soft_expired = true;
        if (h->run.valid())
          h->run.cancel();
        continue;
      }
      log("task " + h->msg.id + " passed its hard time limit of " + dumps(json(l.seconds)) + " s");
      finish_failure(
          h,
          remote_exception{"TimeLimitExceeded", json::array({l.seconds}), "billiard.exceptions"},
          std::nullopt);
    }
  }

  /// Every tag in hand: waiting for an ETA, or running longer than the visibility timeout.
  std::vector<std::string> held_tags() const {
    std::vector<std::string> tags;
    std::lock_guard lock(hand_mutex);
    tags.reserve(hand.size());
    for (const auto& [tag, h] : hand) tags.push_back(tag);
    return tags;
  }

  void set_fatal(const std::string& what) {
    fatal_what = what;
    fatal.store(true, std::memory_order_release);  // pairs with the acquire in run()
  }

  // ---- threads ----

  void reporter_loop();
  void open_senders();
  bool reported_empty() const;  ///< report_mutex held
  /// send_mutex held: what was reported moves to `sending*` (only the Redis commands when
  /// `redis_only`: end events wait for the results they follow, AMQP ops for the flush).
  void take_reported(bool redis_only);
  void flush_locked();  ///< send_mutex held; throws broker_error (the rest is kept)
  /// report(), then sends at once on this thread unless another thread is sending.
  void report_now(outgoing o);
  /// Redis: writes what is queued (not the end events, stamped once results are stored) without
  /// waiting for the replies, unless another thread is sending; else leaves it to that one.
  void write_ahead();
  void control_loop(const std::atomic<bool>& stop);
  json control_reply(const json& request);
  void serve_amqp(const std::atomic<bool>& stop);
  /// Cancels the ETA tasks `which` selects that have not started (they never run) and drops
  /// them from the hand, unacked: the broker has them (Redis: restored; RabbitMQ: delivered
  /// again once their connection is gone). Returns how many.
  template <class Pred>
  std::size_t cancel_waiting(Pred which) {
    std::vector<std::shared_ptr<held_task>> waiting;
    {
      std::lock_guard lock(hand_mutex);
      for (const auto& [tag, h] : hand)
        if (h->eta && which(*h))
          waiting.push_back(h);
    }
    std::size_t n = 0;
    for (const auto& h : waiting) {
      std::lock_guard lock(hand_mutex);
      if (h->run.valid() && h->run.cancel()) {
        hand.erase(h->held.tag);
        eta_held.fetch_sub(1, std::memory_order_relaxed);
        ++n;
      }
    }
    return n;
  }
  /// Stop: the waiting ETA tasks go back, what runs finishes (unless the broker is lost).
  void wind_down() {
    cancel_waiting([](const held_task&) {
      return true;
    });
    std::unique_lock lock(hand_mutex);
    while (!hand.empty() && !fatal.load(std::memory_order_acquire))  // pairs with set_fatal()
      slot_cv.wait_for(lock, 100ms);
  }
  /// worker-offline, then the reporter sends what is left and returns.
  void stop_reporter() {
    report_event(worker_event("worker-offline"));
    {
      std::lock_guard lock(report_mutex);
      reporter_exit = true;
    }
    report_cv.notify_one();
  }
  /// A pidbox request's reply and where it goes; nothing for a cast, an expired request or
  /// one for other nodes.
  struct control_answer {
    std::string exchange;
    std::string routing_key;
    json body;
    json headers;
  };
  std::optional<control_answer> answer_control(const json& request, const json& headers);
  void answer_amqp_control(const amqp_message& m);
  void consume(const std::atomic<bool>& stop);
};

void worker::state::open_senders() {
  if (!amqp) {
    broker_conn = std::make_unique<redis_connection>(broker);
    sender_rb = std::make_unique<redis_broker>(*broker_conn, keys);
  }
  if (!rpc_backend && (amqp || !backend_is_broker))
    backend_conn = std::make_unique<redis_connection>(backend);
}

bool worker::state::reported_empty() const {
  return backend_cmds.empty() && broker_cmds.empty() && amqp_ops.empty() && end_events.empty();
}

void worker::state::take_reported(bool redis_only) {
  std::lock_guard lock(report_mutex);
  append_all(sending_backend, backend_cmds);
  append_all(sending.broker, broker_cmds);
  if (redis_only)
    return;
  append_all(sending.amqp, amqp_ops);
  append_all(sending_end, end_events);
}

void worker::state::flush_locked() {
  take_reported(false);
  const auto send = [](redis_connection& c, std::vector<command>& cmds) {
    if (cmds.empty())
      return;
    try {
      c.pipeline(argv_of(cmds));
    } catch (const broker_refused& e) {
      // The connection is fine and every command ran; one was refused (a key of another
      // type, say). Nothing to retry: say so and go on.
      std::cerr << "celery_worker: " << e.what() << "\n";
    }
    cmds.clear();
  };
  send(backend_conn ? *backend_conn : *broker_conn, sending_backend);
  if (amqp) {
    // Stamped after a Redis backend stored the results they follow, or after the rpc://
    // results, posted before them, are handed to the link.
    for (json& e : sending_end) add_event(sending, std::move(e));
    sending_end.clear();
    link->post(std::move(sending.amqp));
    sending.amqp.clear();
    return;
  }
  send(*broker_conn, sending.broker);  // results (one database with the broker) and acks
  // Stamped once the results they follow are stored, as Celery's are; their replies are read
  // with the next command (the thread goes back to its tasks without a round trip). On a lost
  // connection they stay in `sending` and go again (an event may then arrive twice).
  for (json& e : sending_end) add_event(sending, std::move(e));
  sending_end.clear();
  if (!sending.broker.empty()) {
    broker_conn->write_ahead(argv_of(sending.broker));
    sending.broker.clear();
  }
}

void worker::state::report_now(outgoing o) {
  report(std::move(o), false);
  // Sent by this thread if no other is sending (one hand-off less than through the reporter);
  // else the one sending, or the reporter, takes it.
  std::unique_lock send_lock(send_mutex, std::try_to_lock);
  if (!send_lock.owns_lock())
    return report_cv.notify_one();
  bool failed = false;
  try {
    flush_locked();
  } catch (const broker_error&) {
    failed = true;  // kept in `sending`: the reporter tries again and decides when to give up
  }
  send_lock.unlock();
  // What came while this thread sent (whoever queued it found the lock taken) is the
  // reporter's.
  bool left = false;
  {
    std::lock_guard lock(report_mutex);
    left = !reported_empty();
  }
  if (left || failed)
    report_cv.notify_one();
}

void worker::state::write_ahead() {
  std::unique_lock send_lock(send_mutex, std::try_to_lock);
  if (!send_lock.owns_lock())
    return;  // the thread sending takes it
  take_reported(true);
  const auto write = [](redis_connection& c, std::vector<command>& cmds) {
    if (cmds.empty())
      return;
    c.write_ahead(argv_of(cmds));
    cmds.clear();
  };
  try {
    write(backend_conn ? *backend_conn : *broker_conn, sending_backend);
    write(*broker_conn, sending.broker);
  } catch (const broker_error&) {
    // Kept (what went out may go twice: events, and idempotent stores): the reporter retries.
    send_lock.unlock();
    report_cv.notify_one();
  }
}

void worker::state::reporter_loop() {
  auto next_heartbeat = steady::now() + opts.heartbeat;
  const auto refresh_every = std::max<std::chrono::seconds>(1s, opts.visibility_timeout / 4);
  auto next_refresh = steady::now() + refresh_every;
  auto next_restore = steady::now() + opts.restore_every;
  auto last_ok = steady::now();
  bool exiting = false;
  bool retrying = false;  // the last send failed: try again after a pause, not at once
  for (;;) {
    {
      std::unique_lock lock(report_mutex);
      const auto wake =
          limits.empty() ? next_heartbeat : std::min(next_heartbeat, limits.begin()->first);
      report_cv.wait_until(lock, retrying ? steady::now() + 200ms : wake, [&] {
        return !reported_empty() || reporter_exit ||
               (!limits.empty() && limits.begin()->first < wake);
      });
      std::vector<time_limit> due;
      while (!limits.empty() && limits.begin()->first <= steady::now()) {
        due.push_back(limits.begin()->second);
        limits.erase(limits.begin());
      }
      if (!due.empty()) {
        lock.unlock();
        enforce_time_limits(std::move(due));
        continue;  // what they reported is picked up at once
      }
      exiting = reporter_exit;
    }
    const auto now = steady::now();
    if (now >= next_heartbeat && !exiting) {
      report_event(worker_event("worker-heartbeat"));
      next_heartbeat = now + opts.heartbeat;
    }
    std::unique_lock send_lock(send_mutex);
    try {
      flush_locked();
      if (!amqp && now >= next_refresh) {
        sender_rb->refresh(held_tags(), unix_seconds(wall_now()));
        next_refresh = now + refresh_every;
      }
      if (!amqp && now >= next_restore && !exiting) {
        const std::size_t n = sender_rb->restore(
            unix_seconds(wall_now()) - static_cast<double>(opts.visibility_timeout.count()));
        if (n > 0) {
          count.restored.fetch_add(n, std::memory_order_relaxed);
          log("restored " + std::to_string(n) +
              " unacknowledged message(s) past the visibility timeout");
        }
        next_restore = now + opts.restore_every;
      }
      last_ok = steady::now();
      retrying = false;
    } catch (const broker_error& e) {
      // Lost connection: keep what was not sent (storing a result and acking are idempotent)
      // and try again after a pause, until reconnect_for.
      log(std::string("broker error: ") + e.what() + "; retrying");
      if (steady::now() - last_ok > opts.reconnect_for) {
        set_fatal(std::string(e.what()) + " (gave up after " +
                  std::to_string(opts.reconnect_for.count()) + " ms)");
        return;
      }
      count.reconnects.fetch_add(1, std::memory_order_relaxed);
      retrying = true;
      continue;
    }
    const bool sent_all = sending_backend.empty() && sending.broker.empty() &&
                          sending.amqp.empty() && sending_end.empty();
    send_lock.unlock();
    if (exiting && sent_all) {
      std::lock_guard lock(report_mutex);
      if (reported_empty())
        return;
    }
  }
}

json worker::state::control_reply(const json& request) {
  const std::string method = request.value("method", "");
  const json args = request.contains("arguments") && request["arguments"].is_object()
                        ? request["arguments"]
                        : json::object();
  if (method == "ping")
    return {{"ok", "pong"}};
  if (method == "registered")
    return tasks.names();
  if (method == "active_queues") {
    json out = json::array();
    for (const std::string& q : opts.queues)
      out.push_back({{"name", q},
                     {"exchange",
                      {{"name", q},
                       {"type", "direct"},
                       {"arguments", nullptr},
                       {"durable", true},
                       {"passive", false},
                       {"auto_delete", false},
                       {"delivery_mode", nullptr},
                       {"no_declare", false}}},
                     {"routing_key", q},
                     {"queue_arguments", nullptr},
                     {"binding_arguments", nullptr},
                     {"consumer_arguments", nullptr},
                     {"durable", true},
                     {"exclusive", false},
                     {"auto_delete", false},
                     {"no_ack", false},
                     {"alias", nullptr},
                     {"bindings", json::array()},
                     {"no_declare", nullptr},
                     {"expires", nullptr},
                     {"message_ttl", nullptr},
                     {"max_length", nullptr},
                     {"max_length_bytes", nullptr},
                     {"max_priority", nullptr}});
    return out;
  }
  if (method == "active" || method == "scheduled" || method == "reserved") {
    json out = json::array();
    std::lock_guard lock(hand_mutex);
    for (const auto& [tag, h] : hand) {
      const bool waiting = h->eta;
      if ((method == "scheduled") != waiting)
        continue;
      const task_message& m = h->msg;
      json r = {{"id", m.id},
                {"name", m.task},
                {"args", m.args},
                {"kwargs", m.kwargs},
                {"type", m.task},
                {"hostname", hostname},
                {"time_start", unix_seconds(h->received)},
                {"acknowledged", false},
                {"delivery_info",
                 {{"exchange", m.exchange},
                  {"routing_key", m.routing_key},
                  {"priority", m.priority},
                  {"redelivered", m.redelivered}}},
                {"worker_pid", pid}};
      if (method == "scheduled")
        out.push_back({{"eta", m.eta ? json(*m.eta) : json(nullptr)},
                       {"priority", m.priority},
                       {"request", r}});
      else
        out.push_back(r);
    }
    return out;
  }
  if (method == "revoke") {
    json ids = args.value("task_id", json());
    if (ids.is_string())
      ids = json::array({ids});
    if (!ids.is_array())
      return {{"error", "revoke: task_id must be an id or a list of ids"}};
    for (const json& id : ids)
      if (id.is_string())
        revoked.add(id.get<std::string>());
    return {{"ok", "tasks " + dumps(ids) + " flagged as revoked"}};
  }
  if (method == "revoked")
    return revoked.snapshot();
  if (method == "stats") {
    json total_json = json::object();
    {
      std::lock_guard lock(total_mutex);
      for (const auto& [name, n] : total) total_json[name] = n;
    }
    const double uptime = std::chrono::duration<double>(steady::now() - started).count();
    return {{"total", total_json},
            {"pid", pid},
            {"clock", std::to_string(clock.load(std::memory_order_relaxed))},
            {"uptime", static_cast<long long>(uptime)},
            {"pool",
             {{"implementation", "offload::executor"},
              {"max-concurrency", executor.worker_count()},
              {"processes", json::array({pid})},
              {"max-tasks-per-child", nullptr},
              {"put-guarded-by-semaphore", false},
              {"timeouts", json::array({0, 0})}}},
            {"broker",
             {{"hostname", broker.host},
              {"port", broker.port},
              {"virtual_host", amqp ? broker.vhost : std::to_string(broker.db)},
              {"transport", amqp ? "amqp" : "redis"},
              {"ssl", broker.tls}}},
            {"prefetch_count", prefetch()},
            {"offload",
             {{"received", count.received.load()},
              {"succeeded", count.succeeded.load()},
              {"failed", count.failed.load()},
              {"retried", count.retried.load()},
              {"revoked", count.revoked.load()},
              {"rejected", count.rejected.load()},
              {"restored", count.restored.load()}}}};
  }
  if (method == "heartbeat") {
    report_event(worker_event("worker-heartbeat"));
    return nullptr;
  }
  if (method == "enable_events") {
    events.store(true, std::memory_order_relaxed);
    return {{"ok", "task events enabled"}};
  }
  if (method == "disable_events") {
    events.store(false, std::memory_order_relaxed);
    return {{"ok", "task events disabled"}};
  }
  if (method == "hello")
    return {{"revoked", json::object()}, {"clock", clock.load(std::memory_order_relaxed)}};
  return {{"error", "No such control command: " + method}};
}

std::optional<worker::state::control_answer> worker::state::answer_control(const json& request,
                                                                           const json& headers) {
  if (headers.is_object() && headers.contains("expires") && headers["expires"].is_number() &&
      headers["expires"].get<double>() < unix_seconds(wall_now()))
    return std::nullopt;  // the caller stopped waiting for it
  const json& dest = request.contains("destination") ? request["destination"] : json();
  if (dest.is_array()) {
    bool mine = false;
    for (const json& d : dest) mine = mine || (d.is_string() && d.get<std::string>() == hostname);
    if (!mine)
      return std::nullopt;
  }
  json reply;
  try {
    reply = control_reply(request);
  } catch (const std::exception& e) {
    reply = {{"error", e.what()}};
  }
  const json& reply_to = request.contains("reply_to") ? request["reply_to"] : json();
  if (!reply_to.is_object() || !request.contains("ticket") || reply.is_null())
    return std::nullopt;  // a cast: no answer
  control_answer a;
  a.body = {{hostname, reply}};
  a.headers = {{"ticket", request["ticket"]},
               {"clock", clock.fetch_add(1, std::memory_order_relaxed) + 1}};
  a.exchange = reply_to.value("exchange", "reply.celery.pidbox");
  a.routing_key = reply_to.value("routing_key", "");
  return a;
}

void worker::state::answer_amqp_control(const amqp_message& m) {
  std::optional<control_answer> a;
  try {
    a = answer_control(json::parse(m.body), m.delivery.headers);
  } catch (const std::exception& e) {
    log(std::string("ignored a control message that is not readable: ") + e.what());
    return;
  }
  if (!a)
    return;
  amqp_op op;
  op.exchange = a->exchange;
  op.routing_key = a->routing_key;
  op.properties.delivery_mode = 1;
  op.properties.headers = a->headers;
  op.body = dumps(a->body);
  std::vector<amqp_op> ops;
  ops.push_back(std::move(op));
  link->post(std::move(ops));
}

void worker::state::control_loop(const std::atomic<bool>& stop) {
  redis_connection sub(broker, 2000ms, 5000ms);
  redis_connection out(broker);
  redis_broker replies(out, keys);
  const std::string channel = fanout_prefix(broker) + "celery.pidbox";
  std::uint64_t subscribed = 0;
  while (!stop.load(std::memory_order_relaxed) && !fatal.load(std::memory_order_relaxed)) {
    try {
      if (subscribed == 0 || subscribed != sub.generation()) {
        sub.disconnect();
        sub.command({"PSUBSCRIBE", channel});
        subscribed = sub.generation();
      }
      const std::optional<redis_reply> r = sub.next_push(200ms);
      if (!r || r->size() != 4 || r->element_str(0) != "pmessage")
        continue;
      std::optional<control_answer> a;
      try {
        const json env = json::parse(r->element_str(3));
        const std::string body = env.at("properties").value("body_encoding", "") == "base64"
                                     ? base64_decode(env.at("body").get<std::string>())
                                     : env.at("body").get<std::string>();
        a = answer_control(json::parse(body), env.at("headers"));
      } catch (const std::exception& e) {
        log(std::string("ignored a control message that is not readable: ") + e.what());
        continue;
      }
      if (a)
        replies.publish_direct(
            a->exchange,
            a->routing_key,
            kombu_envelope(dumps(a->body), a->headers, a->exchange, a->routing_key, 1));
    } catch (const broker_error& e) {
      log(std::string("control: ") + e.what() + "; reconnecting");
      sub.disconnect();
      subscribed = 0;
      std::this_thread::sleep_for(200ms);
    }
  }
}

void worker::state::consume(const std::atomic<bool>& stop) {
  redis_connection conn(broker);
  redis_broker rb(conn, keys);
  auto last_ok = steady::now();
  bool broken = false;
  bool more = true;  // the last pop may have left messages
  while (!stop.load(std::memory_order_relaxed)) {
    if (fatal.load(std::memory_order_acquire))  // pairs with set_fatal()
      return;
    std::size_t room = 0;
    {
      std::unique_lock lock(hand_mutex);
      const unsigned held = busy.load(std::memory_order_relaxed);
      if (held >= prefetch() || eta_held.load(std::memory_order_relaxed) >= opts.max_eta_held) {
        slot_cv.wait_for(lock, 100ms);
        continue;
      }
      room = prefetch() - held;
    }
    try {
      // After a batch that emptied every list, the next pop waits for a message first: one
      // round trip per message when idle. A message in a list other than the first queue's
      // bucket 0 reaches an idle worker within the wait's bound.
      std::vector<held_message> taken =
          rb.pop(opts.queues, unix_seconds(wall_now()), hostname, room, more ? 0ms : 250ms);
      if (broken) {
        log("reconnected to " + conn.describe());
        count.reconnects.fetch_add(1, std::memory_order_relaxed);
        broken = false;
      }
      last_ok = steady::now();
      more = taken.size() == room;  // less: the script emptied every list
      for (held_message& m : taken) accept(std::move(m));
    } catch (const broker_refused& e) {
      throw std::runtime_error("cannot consume " + dumps(json(opts.queues)) + ": " + e.what());
    } catch (const broker_error& e) {
      if (!broken)
        log(std::string("broker error: ") + e.what() + "; reconnecting");
      broken = true;
      if (steady::now() - last_ok > opts.reconnect_for)
        throw broker_error(std::string(e.what()) + " (gave up after " +
                           std::to_string(opts.reconnect_for.count()) + " ms)");
      std::this_thread::sleep_for(100ms);
    }
  }
}

worker::worker(offload::executor& executor, const task_registry& tasks, worker_options options)
    : m_state(std::make_unique<state>(executor, tasks, std::move(options))) {
  state& s = *m_state;
  try {
    celery_endpoints e = parse_celery_endpoints(s.opts.broker, s.opts.result_backend);
    s.broker = std::move(e.broker);
    s.backend = std::move(e.backend);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("celery worker: ") + e.what());
  }
  s.amqp = s.broker.scheme == broker_url::kind::amqp;
  s.rpc_backend = s.backend.scheme == broker_url::kind::rpc;
  s.backend_is_broker = !s.amqp && !s.rpc_backend && s.backend.redacted() == s.broker.redacted() &&
                        s.backend.password == s.broker.password;
  if (s.opts.queues.empty())
    throw std::invalid_argument("celery worker: no queues to consume");
  for (const std::string& q : s.opts.queues)
    if (q.empty())
      throw std::invalid_argument("celery worker: a queue name is empty");
  if (tasks.empty())
    throw std::invalid_argument("celery worker: the task registry is empty");
  if (s.opts.heartbeat <= std::chrono::milliseconds::zero())
    throw std::invalid_argument("celery worker: heartbeat must be positive");
  s.hostname = s.opts.hostname.empty() ? default_hostname() : s.opts.hostname;
  if (s.opts.prefetch == 0)
    s.opts.prefetch = 4 * std::max(1u, executor.worker_count());
}

worker::~worker() {
  // The executor outlives the worker (the caller owns it) and may still hold calls into this
  // state: a task running past its hard time limit (it cannot be killed), or one cancelled but
  // not yet dropped. Wait for them.
  while (m_state->calls.load(std::memory_order_acquire) != 0)  // pairs with the call tokens
    std::this_thread::sleep_for(1ms);
}

const std::string& worker::hostname() const noexcept {
  return m_state->hostname;
}

worker_stats worker::stats() const {
  const auto& c = m_state->count;
  return {c.received.load(),
          c.succeeded.load(),
          c.failed.load(),
          c.retried.load(),
          c.revoked.load(),
          c.rejected.load(),
          c.restored.load(),
          c.reconnects.load()};
}

void worker::state::serve_amqp(const std::atomic<bool>& stop) {
  amqp_link_options lo;
  lo.url = broker;
  lo.queues = opts.queues;
  lo.hostname = hostname;
  lo.prefetch = prefetch();
  lo.queue_max_priority = opts.queue_max_priority;
  lo.connection.heartbeat = opts.amqp_heartbeat;
  lo.connection.ca_file = opts.ca_file;
  lo.reconnect_for = opts.reconnect_for;
  amqp_link_hooks hooks;
  hooks.task = [this](amqp_message m, std::uint64_t gen) {
    held_message held;
    held.tag = std::to_string(gen) + "." + std::to_string(m.tag);
    held.list = m.queue;
    accept(std::move(held), &m, gen);
  };
  hooks.control = [this](amqp_message m) {
    answer_amqp_control(m);
  };
  hooks.eta_held = [this] {
    return std::min(eta_held.load(std::memory_order_relaxed), opts.max_eta_held);
  };
  hooks.lost = [this](std::uint64_t gen) {
    const std::size_t n = cancel_waiting([gen](const held_task& h) {
      return h.generation == gen;
    });
    count.reconnects.fetch_add(1, std::memory_order_relaxed);
    if (n > 0)
      log(std::to_string(n) +
          " waiting ETA task(s) of the lost connection dropped: delivered again");
  };
  hooks.log = [this](const std::string& line) {
    log(line);
  };
  link = std::make_unique<amqp_worker_link>(std::move(lo), std::move(hooks));
  open_senders();
  report_event(worker_event("worker-online"));
  std::thread reporter([this] {
    reporter_loop();
  });
  std::exception_ptr failure;
  std::atomic<bool> link_done{false};
  std::thread io([&] {
    try {
      link->run();
    } catch (const std::exception& e) {
      failure = std::current_exception();
      set_fatal(e.what());
    }
    link_done.store(true, std::memory_order_relaxed);
  });
  log("consuming " + dumps(json(opts.queues)) + " on " + broker.redacted());
  while (!stop.load(std::memory_order_relaxed) && !link_done.load(std::memory_order_relaxed) &&
         !fatal.load(std::memory_order_acquire))  // pairs with set_fatal()
    std::this_thread::sleep_for(50ms);
  link->stop_consuming();
  wind_down();
  stop_reporter();
  reporter.join();  // everything it had is posted to the link
  link->finish();
  io.join();  // ... and sent, unless the link failed (then `failure` says why)
  if (failure)
    std::rethrow_exception(failure);
  if (fatal.load(std::memory_order_acquire))
    throw broker_error(fatal_what);
}

void worker::run() {
  state& s = *m_state;
  if (s.amqp)
    return s.serve_amqp(m_stop);
  {
    // What an earlier run under this hostname held (killed, say) goes back first, and what
    // anyone left past the visibility timeout.
    redis_connection conn(s.broker);
    redis_broker rb(conn, s.keys);
    const double now = unix_seconds(wall_now());
    const std::size_t n =
        rb.restore(now - static_cast<double>(s.opts.visibility_timeout.count()), s.hostname);
    if (n > 0) {
      s.count.restored.fetch_add(n, std::memory_order_relaxed);
      s.log("restored " + std::to_string(n) + " unacknowledged message(s)");
    }
  }
  s.open_senders();
  s.report_event(s.worker_event("worker-online"));
  std::thread reporter([&s] {
    s.reporter_loop();
  });
  std::thread control([&] {
    s.control_loop(m_stop);
  });
  std::exception_ptr failure;
  try {
    s.log("consuming " + dumps(json(s.opts.queues)) + " on " + s.broker.redacted());
    s.consume(m_stop);
  } catch (...) {
    failure = std::current_exception();
  }
  m_stop.store(true, std::memory_order_relaxed);  // the control thread ends too
  s.wind_down();
  control.join();
  s.stop_reporter();
  reporter.join();
  if (!failure && !s.fatal.load(std::memory_order_acquire)) {
    try {
      redis_connection conn(s.broker);
      redis_broker rb(conn, s.keys);
      const std::size_t n = rb.restore(0, s.hostname);  // the cancelled ETA tasks
      if (n > 0)
        s.log("restored " + std::to_string(n) + " waiting ETA message(s) to their queues");
    } catch (const broker_error& e) {
      s.log(std::string("could not put back the waiting ETA messages (restored later): ") +
            e.what());
    }
  }
  if (failure)
    std::rethrow_exception(failure);
  if (s.fatal.load(std::memory_order_acquire))
    throw broker_error(s.fatal_what);
}

}  // namespace offload::broker::celery
