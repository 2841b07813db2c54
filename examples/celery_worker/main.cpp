// celery_worker: a Celery worker in C++ serving its tasks to unchanged Python Celery clients.
//
//   celery_worker --broker redis://127.0.0.1:6379/0 [--result-backend redis://…]
//                 [--queues celery,other] [--concurrency N] [--hostname NAME]
//                 [--without-task-events]
//   celery_worker --broker amqp://guest:guest@127.0.0.1:5672// [--result-backend rpc://]
//                 [--queue-max-priority N] [--ca-file PEM (amqps://)] …
//
// Over RabbitMQ the result backend defaults to rpc://; redis://… works with it too.
//
//   tasks.add(x, y)        x + y (args or kwargs)
//   tasks.echo(value)      the JSON value
//   tasks.fail(message)    fails: Python sees ValueError(message)
//   tasks.retry_me(times)  asks for a retry `times` times, then returns the attempts made
//   tasks.sleep_ms(ms)     waits ms without holding an executor worker, returns ms
//   noop(payload)          returns "ok"                  } the benchmark's tasks, under the names
//   spin_us(us, payload)   burns us µs of CPU, "ok"      } bench/brokered/celery_app.py gives them
//
// ./scripts/bench builds this same source as celery_bench_worker and measures it against
// Celery's own worker with the same Python client.
//
// Task events (task-received, -started, -succeeded, ...) are on unless --without-task-events
// (Celery's own worker sends them only with -E); worker events (online, heartbeat, offline) are
// always sent. `celery control enable_events` turns them on again.
//
// SIGTERM/SIGINT: stops consuming, finishes what is in hand, sends worker-offline, exits 0.
// Exits 1 if the broker stays unreachable, 2 on bad arguments.
#include <csignal>
#include <iostream>
#include <sstream>

#include <offload/broker/celery/worker.hpp>
#include <offload/broker/cli_args.hpp>
#include <offload/offload.hpp>

namespace {

using namespace offload::broker::celery;

worker* g_worker = nullptr;

extern "C" void on_signal(int) {
  if (g_worker != nullptr)
    g_worker->stop();
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, ',');)
    if (!part.empty())
      out.push_back(part);
  return out;
}

task_registry example_tasks() {
  task_registry tasks;
  tasks.add("tasks.add", {"x", "y"}, [](json x, json y) -> json {
    if (x.is_number_integer() && y.is_number_integer())
      return x.get<std::int64_t>() + y.get<std::int64_t>();
    if (x.is_number() && y.is_number())
      return x.get<double>() + y.get<double>();
    if (x.is_string() && y.is_string())
      return x.get<std::string>() + y.get<std::string>();
    throw task_error("TypeError", "unsupported operand type(s) for +");
  });
  tasks.add("tasks.echo", {"value"}, [](json value) {
    return value;
  });
  tasks.add("tasks.fail", {"message"}, [](std::string message) -> json {
    throw std::invalid_argument(message);
  });
  tasks.add(
      "tasks.retry_me",
      {"times"},
      [](const task_request& req, std::int64_t times) {
        if (req.retries < times)
          throw retry("retry " + std::to_string(req.retries + 1) + " of " + std::to_string(times),
                      std::chrono::milliseconds(100));
        return req.retries + 1;
      },
      offload::task_options{.retry = offload::retry_policy{.max_attempts = 1000}});
  tasks.add("tasks.sleep_ms", {"ms"}, [](std::int64_t ms) {
    offload::this_task::sleep_for(std::chrono::milliseconds(ms));  // suspends the task's fiber
    return ms;
  });
  tasks.add("noop", {"payload"}, [](const std::string&) {
    return std::string("ok");
  });
  tasks.add("spin_us", {"us", "payload"}, [](std::int64_t us, const std::string&) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
    while (std::chrono::steady_clock::now() < end) {
    }
    return std::string("ok");
  });
  return tasks;
}

}  // namespace

int main(int argc, char** argv) {
  worker_options opts;
  unsigned concurrency = 0;
  try {
    const offload::broker::cli_args args(argc, argv);
    args.allow_only({"--broker",
                     "--result-backend",
                     "--queues",
                     "--hostname",
                     "--concurrency",
                     "--ca-file",
                     "--queue-max-priority"},
                    {"--without-task-events"});
    opts.broker = args.value("--broker", opts.broker);
    opts.result_backend = args.value("--result-backend", "");
    opts.queues = split(args.value("--queues", "celery"));
    opts.hostname = args.value("--hostname", "");
    opts.task_events = !args.flag("--without-task-events");
    opts.ca_file = args.value("--ca-file", "");
    const long prio = args.number("--queue-max-priority", 0);
    if (prio < 0 || prio > 255)
      throw std::invalid_argument("--queue-max-priority must be in [0, 255], got " +
                                  std::to_string(prio));
    opts.queue_max_priority = static_cast<int>(prio);
    const long c = args.number("--concurrency", 0);
    if (c < 0 || c > 1024)
      throw std::invalid_argument("--concurrency must be in [0, 1024] (0: one per core), got " +
                                  std::to_string(c));
    concurrency = static_cast<unsigned>(c);
  } catch (const std::exception& e) {
    std::cerr << "celery_worker: " << e.what() << "\n";
    return 2;
  }
  try {
    const task_registry tasks = example_tasks();
    offload::executor_options eo;
    if (concurrency > 0)
      eo.workers = concurrency;
    offload::executor ex(eo);
    worker w(ex, tasks, opts);
    g_worker = &w;
    std::signal(SIGTERM, on_signal);
    std::signal(SIGINT, on_signal);
    std::cerr << "celery_worker: " << w.hostname() << " serving " << tasks.names().size()
              << " tasks\n";
    w.run();
    g_worker = nullptr;
    const worker_stats s = w.stats();
    std::cerr << "celery_worker: stopped: " << s.received << " received, " << s.succeeded
              << " succeeded, " << s.failed << " failed, " << s.retried << " retried, " << s.revoked
              << " revoked, " << s.rejected << " rejected\n";
    return 0;
  } catch (const std::invalid_argument& e) {
    std::cerr << "celery_worker: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "celery_worker: " << e.what() << "\n";
    return 1;
  }
}
