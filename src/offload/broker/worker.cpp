#include <iostream>
#include <optional>
#include <stdexcept>
#include <thread>

#include <offload/broker/tasks.hpp>
#include <offload/broker/worker.hpp>
#include <offload/offload.hpp>

namespace offload::broker {
namespace {

message reply_to(const message& request, std::string status, std::string body, std::string error) {
  message r;
  r.task = std::move(status);
  r.correlation_id = request.correlation_id;
  r.idempotency_key = request.idempotency_key;
  r.attempt = request.attempt;
  r.body = std::move(body);
  r.error = std::move(error);
  return r;
}

}  // namespace

class worker::executor_holder {
 public:
  explicit executor_holder(unsigned threads) : ex(offload::executor_options{.workers = threads}) {}
  offload::executor ex;
};

worker::worker(connector connect, worker_options opts)
    : m_connect(std::move(connect)), m_opts(std::move(opts)) {
  if (m_opts.threads == 0) {
    throw std::invalid_argument("worker: threads must be at least 1, got 0");
  }
  if (m_opts.max_attempts == 0) {
    throw std::invalid_argument("worker: max_attempts must be at least 1, got 0");
  }
  if (m_opts.max_in_flight == 0) {
    m_opts.max_in_flight = 2 * m_opts.threads;
  }
}

void worker::log(const std::string& line) const {
  std::cerr << "offload_worker: " << line << "\n";
}

void worker::start(delivery d) {
  ++m_in_flight;
  m_exec->ex.post([this, d = std::move(d)]() mutable {
    completion c;
    c.d = std::move(d);
    try {
      c.result = run_task(*c.d.msg);
      c.ok = true;
    } catch (const unknown_task& e) {
      c.result = e.what();
      c.permanent = true;
    } catch (const std::invalid_argument& e) {
      c.result = e.what();
      c.permanent = true;
    } catch (const std::exception& e) {
      c.result = e.what();
    }
    {
      std::lock_guard lock(m_mutex);
      m_done.push_back(std::move(c));
    }
    m_done_cv.notify_one();
  });
}

void worker::finish(transport& t, const completion& c) {
  try {
    finish_or_throw(t, c);
  } catch (const broker_refused& e) {
    // One message's data is wrong for the broker (its reply_to names a key of another type,
    // say): that message goes to the dead letters with the reason, and the worker goes on.
    // A lost connection (any other broker_error) propagates: the completion is retried.
    const message& m = *c.d.msg;
    const std::string reason =
        std::string("the broker refused a command for this message: ") + e.what();
    try {
      t.dead_letter(c.d, reason);
      log("dead-lettered " + m.task + " " + m.correlation_id + ": " + reason);
    } catch (const broker_refused& again) {
      // Not even the dead-letter queue takes it: say so loudly and drop it, rather than let one
      // message stop all processing (and poison the next worker from the processing list).
      t.ack(c.d);
      log("DROPPED " + m.task + " " + m.correlation_id + ": " + reason +
          "; dead-lettering it was refused too: " + again.what());
    }
    ++m_stats.dead_lettered;
  }
}

void worker::finish_or_throw(transport& t, const completion& c) {
  const message& m = *c.d.msg;
  if (c.ok) {
    if (!m.reply_to.empty()) {
      t.publish(m.reply_to, reply_to(m, "ok", c.result, ""));
    }
    t.ack(c.d);
    ++m_stats.succeeded;
    if (m_opts.verbose) {
      log("done " + m.task + " " + m.correlation_id);
    }
    return;
  }
  if (!c.permanent && m.attempt < m_opts.max_attempts) {
    message again = m;
    ++again.attempt;
    t.publish(m_opts.queue, again);  // then ack: a crash in between runs it twice, never zero
    t.ack(c.d);
    ++m_stats.retried;
    log("retrying " + m.task + " " + m.correlation_id + " (attempt " +
        std::to_string(again.attempt) + "): " + c.result);
    return;
  }
  const std::string reason = c.result + " (attempt " + std::to_string(m.attempt) + " of " +
                             std::to_string(m_opts.max_attempts) + ")";
  t.dead_letter(c.d, reason);
  ++m_stats.dead_lettered;
  if (!m.reply_to.empty()) {
    try {
      t.publish(m.reply_to, reply_to(m, "error", "", reason));
    } catch (const broker_refused& e) {  // dead-lettered already: only the reply is lost
      log("the error reply for " + m.task + " " + m.correlation_id + " was refused: " + e.what());
    }
  }
  log("dead-lettered " + m.task + " " + m.correlation_id + ": " + reason);
}

void worker::run() {
  using namespace std::chrono_literals;
  using clock = std::chrono::steady_clock;
  m_exec = std::make_shared<executor_holder>(m_opts.threads);
  std::unique_ptr<transport> t;
  auto last_ok = clock::now();
  bool broken = false;
  for (;;) {
    const bool stopping = m_stop.load(std::memory_order_relaxed);
    if (stopping && m_in_flight == 0) {
      break;
    }
    try {
      if (!t) {
        t = m_connect();
        t->declare(m_opts.queue);
        log("consuming '" + m_opts.queue + "' on " + t->describe());
      }
      if (broken) {
        t->declare(m_opts.queue);  // a broker restarted without its data needs it again
        ++m_stats.reconnects;
        log("reconnected to " + t->describe());
        broken = false;
      }
      // Finish what the executor completed. A completion leaves m_done only once finished, so a
      // broker failure here retries it after reconnecting.
      for (;;) {
        std::unique_lock lock(m_mutex);
        if (m_done.empty()) {
          break;
        }
        completion& c = m_done.front();
        lock.unlock();
        finish(*t, c);
        lock.lock();
        m_done.pop_front();
        --m_in_flight;
      }
      last_ok = clock::now();
      if (!stopping && m_in_flight < m_opts.max_in_flight) {
        // Idle: block on the broker. Busy: only poll, and wait for completions below.
        std::optional<delivery> d;
        try {
          d = t->receive(m_opts.queue, m_in_flight == 0 ? 200ms : 0ms);
        } catch (const broker_refused& e) {
          // The queue itself is unusable (a key of another type): no retry can fix that.
          m_exec.reset();
          throw std::runtime_error(std::string("cannot consume '") + m_opts.queue +
                                   "': " + e.what());
        }
        if (d) {
          if (!d->msg) {
            t->dead_letter(*d, "malformed message: " + d->malformed);
            ++m_stats.dead_lettered;
            log("dead-lettered a malformed message: " + d->malformed);
          } else {
            start(std::move(*d));
          }
          continue;
        }
      }
      if (m_in_flight > 0) {
        std::unique_lock lock(m_mutex);
        m_done_cv.wait_for(lock, m_in_flight < m_opts.max_in_flight ? 2ms : 200ms, [&] {
          return !m_done.empty();
        });
      }
    } catch (const broker_error& e) {
      if (!broken) {
        log(std::string("broker error: ") + e.what() + "; reconnecting");
      }
      broken = true;
      if (clock::now() - last_ok > m_opts.reconnect_for) {
        m_exec.reset();  // drains the tasks in flight; their results are dropped (redelivered)
        throw broker_error(std::string(e.what()) + " (gave up after " +
                           std::to_string(m_opts.reconnect_for.count()) + " ms)");
      }
      std::this_thread::sleep_for(100ms);
    }
  }
  m_exec.reset();
}

}  // namespace offload::broker
