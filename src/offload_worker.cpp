// offload_worker: consumes named tasks from a Redis or RabbitMQ queue and runs them on an
// offload::executor. See docs/brokers.md.
//
//   offload_worker --broker redis|rabbitmq --port N [--host H] [--queue tasks] [--threads 2]
//                  [--max-in-flight 4] [--max-attempts 3] [--reconnect-for-ms 30000]
//                  [--connect-timeout-ms 2000] [--io-timeout-ms 5000] [--verbose]
//   redis:    [--reliable --consumer-id ID]  processing list, recovered at start
//   rabbitmq: [--persistent] [--confirms] [--prefetch N] [--vhost V] [--user U]
//             (password from the environment variable OFFLOAD_BROKER_PASSWORD)
// Exits 0 on SIGTERM/SIGINT after finishing the tasks in flight; 1 if the broker stays
// unreachable; 2 on bad arguments.
#include <csignal>
#include <iostream>

#include <offload/broker/cli_args.hpp>
#include <offload/broker/redis_transport.hpp>
#include <offload/broker/worker.hpp>

namespace {

offload::broker::worker* g_worker = nullptr;

extern "C" void on_signal(int) {
  if (g_worker != nullptr) {
    g_worker->stop();
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace offload::broker;
  connect_options conn;
  worker_options opts;
  try {
    const cli_args args(argc, argv);
    conn = args.connection();
    opts.queue = args.value("--queue", "tasks");
    opts.threads = static_cast<unsigned>(args.number("--threads", 2));
    opts.max_in_flight = static_cast<unsigned>(args.number("--max-in-flight", 0));
    opts.max_attempts = static_cast<unsigned>(args.number("--max-attempts", 3));
    opts.reconnect_for = std::chrono::milliseconds(args.number("--reconnect-for-ms", 30000));
    opts.verbose = args.flag("--verbose");
    if (opts.threads == 0 || args.number("--threads", 2) < 0) {
      throw std::invalid_argument("--threads must be at least 1");
    }
    if (opts.max_attempts == 0 || args.number("--max-attempts", 3) < 0) {
      throw std::invalid_argument("--max-attempts must be at least 1");
    }
    if (args.number("--max-in-flight", 0) < 0 || args.number("--reconnect-for-ms", 30000) < 0) {
      throw std::invalid_argument("--max-in-flight and --reconnect-for-ms must not be negative");
    }
    if (conn.broker == "rabbitmq" && conn.prefetch == 0) {
      conn.prefetch = opts.max_in_flight == 0 ? 2 * opts.threads : opts.max_in_flight;
    }
  } catch (const std::exception& e) {
    std::cerr << "offload_worker: " << e.what() << "\n";
    return 2;
  }
  try {
    if (conn.broker == "redis" && conn.reliable) {
      // Whatever a previous worker of this id held when it died goes back to the queue.
      redis_options ro;
      ro.where = conn.where;
      ro.reliable = true;
      ro.consumer_id = conn.consumer_id;
      redis_transport r(std::move(ro));
      const std::size_t n = r.recover(opts.queue, conn.consumer_id);
      if (n > 0) {
        std::cerr << "offload_worker: recovered " << n << " message(s) of consumer '"
                  << conn.consumer_id << "'\n";
      }
    }
    worker w(
        [conn] {
          return open_transport(conn);
        },
        opts);
    g_worker = &w;
    std::signal(SIGTERM, on_signal);
    std::signal(SIGINT, on_signal);
    w.run();
    const worker_stats s = w.stats();
    std::cerr << "offload_worker: stopped; succeeded " << s.succeeded << ", retried " << s.retried
              << ", dead-lettered " << s.dead_lettered << ", reconnects " << s.reconnects << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "offload_worker: " << e.what() << "\n";
    return 1;
  }
}
