#include <algorithm>
#include <cerrno>
#include <system_error>
#include <thread>

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <offload/broker/celery/amqp_worker_link.hpp>

namespace offload::broker::celery {
namespace {

using steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr int k_reads_per_round = 64;  // deliveries read before posted ops are sent again

}  // namespace

amqp_worker_link::amqp_worker_link(amqp_link_options options, amqp_link_hooks hooks)
    : m_opts(std::move(options)), m_hooks(std::move(hooks)) {
  m_wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (m_wake_fd < 0)
    throw std::system_error(errno, std::generic_category(), "amqp_worker_link: eventfd");
}

amqp_worker_link::~amqp_worker_link() {
  ::close(m_wake_fd);
}

void amqp_worker_link::wake() {
  const std::uint64_t one = 1;
  // EAGAIN means the counter is already non-zero: run() wakes anyway.
  [[maybe_unused]] const ssize_t n = ::write(m_wake_fd, &one, sizeof one);
}

void amqp_worker_link::post(std::vector<amqp_op> ops) {
  {
    std::lock_guard lock(m_mutex);
    for (amqp_op& op : ops) m_posted.push_back(std::move(op));
  }
  wake();
}

void amqp_worker_link::stop_consuming() {
  m_stop_consuming.store(true, std::memory_order_relaxed);
  wake();
}

void amqp_worker_link::finish() {
  // Release: pairs with the acquire in send_posted(); what was posted before is sent first.
  m_finish.store(true, std::memory_order_release);
  wake();
}

void amqp_worker_link::setup(amqp_connection& c) {
  // What Celery's worker declares, declared only where missing (see ensure_queue): a direct
  // exchange per queue, bound with the queue's name; events; the pidbox mailbox.
  for (const std::string& q : m_opts.queues) {
    c.ensure_exchange(q, "direct", true, false);
    json args = json::object();
    if (m_opts.queue_max_priority > 0)
      args["x-max-priority"] = m_opts.queue_max_priority;
    c.ensure_queue(q, true, false, args);
    c.bind(q, q, q);
    c.ensure_queue(q + ".dead", true, false);  // offload's: malformed messages, with the reason
  }
  c.ensure_exchange("celeryev", "topic", true, false);
  c.ensure_exchange("celery.pidbox", "fanout", false, false);
  c.ensure_exchange("reply.celery.pidbox", "direct", false, false);
  const std::string pidbox = m_opts.hostname + ".celery.pidbox";
  c.ensure_queue(pidbox, false, true, {{"x-message-ttl", 300000}, {"x-expires", 10000}});
  c.bind(pidbox, "celery.pidbox", "");
  m_qos = 0;
  m_consumers.clear();
  m_consuming = false;
  if (!m_stop_consuming.load(std::memory_order_relaxed)) {
    m_qos = static_cast<std::uint16_t>(std::clamp<unsigned>(m_opts.prefetch, 1, 65535));
    c.qos(m_qos);
    for (const std::string& q : m_opts.queues) m_consumers.emplace_back(c.consume(q, false), q);
    m_consuming = true;
  }
  m_control_tag = c.consume(pidbox, true);
}

bool amqp_worker_link::send_posted(amqp_connection& c) {
  const bool finishing = m_finish.load(std::memory_order_acquire);  // pairs with finish()
  std::vector<amqp_op> ops;
  {
    std::lock_guard lock(m_mutex);
    ops.swap(m_posted);
  }
  const std::uint64_t gen = generation();
  std::size_t i = 0;
  try {
    for (; i < ops.size(); ++i) {
      const amqp_op& op = ops[i];
      if (op.what == amqp_op::kind::ack) {
        if (op.generation == gen)
          c.ack(op.tag);
      } else {
        c.publish(op.exchange, op.routing_key, op.properties, op.body);
      }
    }
  } catch (...) {
    // Unsent: first again after the reconnection (the one that failed may go twice).
    std::lock_guard lock(m_mutex);
    m_posted.insert(m_posted.begin(),
                    std::make_move_iterator(ops.begin() + static_cast<std::ptrdiff_t>(i)),
                    std::make_move_iterator(ops.end()));
    throw;
  }
  return !finishing;
}

void amqp_worker_link::serve(amqp_connection& c) {
  for (;;) {
    if (!send_posted(c))
      return;
    if (m_consuming && m_stop_consuming.load(std::memory_order_relaxed)) {
      for (const auto& [tag, queue] : m_consumers) c.cancel(tag);
      m_consuming = false;
    }
    if (m_consuming) {
      const unsigned want = m_opts.prefetch + (m_hooks.eta_held ? m_hooks.eta_held() : 0);
      const auto qos = static_cast<std::uint16_t>(std::clamp<unsigned>(want, 1, 65535));
      if (qos != m_qos) {
        c.qos(qos);
        m_qos = qos;
      }
    }
    int read = 0;
    for (int tries = 0; tries < k_reads_per_round; ++tries) {
      std::optional<amqp_message> m = c.next();
      if (!m) {
        if (c.buffered())
          continue;
        break;
      }
      ++read;
      if (m->consumer_tag == m_control_tag) {
        m->queue = m_opts.hostname + ".celery.pidbox";
        if (m_hooks.control)
          m_hooks.control(std::move(*m));
        continue;
      }
      const auto it = std::find_if(m_consumers.begin(), m_consumers.end(), [&](const auto& e) {
        return e.first == m->consumer_tag;
      });
      if (!m_consuming || it == m_consumers.end()) {
        c.reject(m->tag, true);  // came after the cancel: back to its queue for someone else
        continue;
      }
      m->queue = it->second;
      m_hooks.task(std::move(*m), generation());
    }
    if (read > 0)
      continue;  // more may be waiting; posted ops go out first
    pollfd fds[2] = {{c.fd(), POLLIN, 0}, {m_wake_fd, POLLIN, 0}};
    if (::poll(fds, 2, 200) < 0 && errno != EINTR)
      throw broker_error(c.describe() + ": poll failed");
    if ((fds[1].revents & POLLIN) != 0) {
      std::uint64_t n = 0;
      [[maybe_unused]] const ssize_t r = ::read(m_wake_fd, &n, sizeof n);
    }
  }
}

void amqp_worker_link::run() {
  const auto log = [&](const std::string& line) {
    if (m_hooks.log)
      m_hooks.log(line);
  };
  std::optional<steady::time_point> lost_at;
  for (;;) {
    try {
      amqp_connection c(m_opts.url, m_opts.connection);
      setup(c);
      // Release: pairs with the acquire in generation().
      const std::uint64_t gen = m_generation.fetch_add(1, std::memory_order_acq_rel) + 1;
      if (lost_at) {
        log("reconnected to " + c.describe() + " (connection " + std::to_string(gen) + ")");
        lost_at.reset();
      }
      serve(c);
      return;
    } catch (const broker_refused& e) {
      if (m_generation.load(std::memory_order_relaxed) == 0)
        throw;  // the first set-up was refused: a wrong vhost, permissions, a clash
      log(std::string("the broker refused: ") + e.what() + "; reconnecting");
    } catch (const broker_error& e) {
      if (!lost_at)
        log(std::string("broker error: ") + e.what() + "; reconnecting");
    }
    const std::uint64_t gen = m_generation.load(std::memory_order_relaxed);
    if (!lost_at) {
      lost_at = steady::now();
      if (gen > 0 && m_hooks.lost)
        m_hooks.lost(gen);
    }
    if (m_finish.load(std::memory_order_acquire)) {
      std::lock_guard lock(m_mutex);
      log("stopping with the broker unreachable: " + std::to_string(m_posted.size()) +
          " result(s), event(s) and ack(s) not sent (unacked tasks are delivered again)");
      return;
    }
    if (steady::now() - *lost_at > m_opts.reconnect_for)
      throw broker_error(m_opts.url.redacted() + " unreachable for " +
                         std::to_string(m_opts.reconnect_for.count()) + " ms");
    std::this_thread::sleep_for(250ms);
  }
}

}  // namespace offload::broker::celery
