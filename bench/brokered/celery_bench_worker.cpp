// celery_bench_worker: the C++ Celery worker serving the benchmark's two tasks under the names
// bench/brokered/celery_app.py gives them, so the same Python client and broker measure Celery's
// own worker and offload's side by side.
//
//   celery_bench_worker --broker URL [--result-backend URL] [--queue celery]
//                       [--concurrency 2] [--events]
//
//   noop(payload)         returns "ok"
//   spin_us(us, payload)  burns `us` µs of CPU on an executor worker, returns "ok"
//
// --events sends task events (Celery's -E); off by default, as in Celery. SIGTERM stops it.
#include <chrono>
#include <csignal>
#include <iostream>

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

task_registry bench_tasks() {
  task_registry tasks;
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
  unsigned concurrency = 2;
  try {
    const offload::broker::cli_args args(argc, argv);
    opts.broker = args.value("--broker", opts.broker);
    opts.result_backend = args.value("--result-backend", "");
    opts.queues = {args.value("--queue", "celery")};
    opts.task_events = args.flag("--events");
    const long c = args.number("--concurrency", 2);
    if (c < 1 || c > 1024)
      throw std::invalid_argument("--concurrency must be in [1, 1024], got " + std::to_string(c));
    concurrency = static_cast<unsigned>(c);
  } catch (const std::exception& e) {
    std::cerr << "celery_bench_worker: " << e.what() << "\n";
    return 2;
  }
  try {
    const task_registry tasks = bench_tasks();
    offload::executor_options eo;
    eo.workers = concurrency;
    offload::executor ex(eo);
    worker w(ex, tasks, opts);
    g_worker = &w;
    std::signal(SIGTERM, on_signal);
    std::signal(SIGINT, on_signal);
    w.run();
    g_worker = nullptr;
    const worker_stats s = w.stats();
    std::cerr << "celery_bench_worker: stopped: " << s.received << " received, " << s.succeeded
              << " succeeded\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "celery_bench_worker: " << e.what() << "\n";
    return 1;
  }
}
