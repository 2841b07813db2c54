// broker_bench: round trips of Celery tasks sent by offload's C++ client (celery::client) through
// a broker to offload's C++ Celery worker (celery_bench_worker), as the caller sees them:
// publish → the worker runs the task and stores its result → the future is ready. The floor of
// the brokered path in Celery's protocol, with no Python on either side. Prints one JSON object.
//
//   broker_bench --broker URL [--result-backend URL] [--queue celery]
//                [--mode pingpong|pipelined] [--in-flight 64] [--work-us 0] [--count 2000]
//                [--warmup 200] [--payload 100] [--timeout-ms 10000] [--path redis]
//                [--variant default]
// --work-us 0 sends the task "noop"(payload), otherwise "spin_us"(us, payload): the tasks of
// bench/brokered/celery_app.py, which examples/celery_worker also serves. Exits 1 with a message
// naming the broker if it fails or a result does not come within --timeout-ms.
#include <algorithm>
#include <chrono>
#include <deque>
#include <iostream>
#include <vector>

#include <nlohmann/json.hpp>

#include <offload/broker/broker_error.hpp>
#include <offload/broker/celery/broker_url.hpp>
#include <offload/broker/celery/client.hpp>
#include <offload/broker/cli_args.hpp>

namespace {

using clock_type = std::chrono::steady_clock;
using offload::broker::broker_error;
namespace celery = offload::broker::celery;

double percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty())
    return 0;
  const auto i = static_cast<std::size_t>(q * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(i, sorted.size() - 1)];
}

/// Runs `count` round trips with up to `in_flight` outstanding; returns latencies in µs.
std::vector<double> run(celery::client& client,
                        const std::string& task,
                        const celery::json& args,
                        const celery::send_options& options,
                        long count,
                        long in_flight,
                        std::chrono::milliseconds timeout) {
  std::vector<double> lat;
  lat.reserve(static_cast<std::size_t>(count));
  std::deque<std::pair<clock_type::time_point, offload::future<std::string>>> pending;
  long launched = 0;
  while (static_cast<long>(lat.size()) < count) {
    while (launched < count && static_cast<long>(pending.size()) < in_flight) {
      const auto t0 = clock_type::now();
      pending.emplace_back(t0,
                           client.send<std::string>(task, args, celery::json::object(), options));
      ++launched;
    }
    auto& [t0, f] = pending.front();
    if (f.wait_for(timeout) != std::future_status::ready)
      throw broker_error("no result within " + std::to_string(timeout.count()) + " ms (" +
                         std::to_string(pending.size()) + " in flight): is the worker running?");
    if (f.get() != "ok")
      throw broker_error("task " + task + " did not return \"ok\"");
    lat.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
    pending.pop_front();
  }
  return lat;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const offload::broker::cli_args args(argc, argv);
    celery::client_options co;
    co.broker = args.value("--broker", "");
    if (co.broker.empty())
      throw std::invalid_argument("--broker URL is required");
    co.result_backend = args.value("--result-backend", "");
    const std::string mode = args.value("--mode", "pingpong");
    const long in_flight = mode == "pipelined" ? args.number("--in-flight", 64) : 1;
    const long work_us = args.number("--work-us", 0);
    const long count = args.number("--count", 2000);
    const long warmup = args.number("--warmup", 200);
    const auto payload = static_cast<std::size_t>(args.number("--payload", 100));
    const std::chrono::milliseconds timeout(args.number("--timeout-ms", 10000));
    if (count <= 0 || in_flight <= 0 || (mode != "pingpong" && mode != "pipelined"))
      throw std::invalid_argument("need --count > 0 and --mode pingpong|pipelined");
    const std::string task = work_us > 0 ? "spin_us" : "noop";
    const std::string body(payload, 'x');
    const celery::json task_args =
        work_us > 0 ? celery::json::array({work_us, body}) : celery::json::array({body});
    celery::send_options so;
    so.queue = args.value("--queue", "celery");

    celery::client client(co);
    if (warmup > 0)
      run(client, task, task_args, so, warmup, in_flight, timeout);
    const auto start = clock_type::now();
    std::vector<double> lat = run(client, task, task_args, so, count, in_flight, timeout);
    const double seconds = std::chrono::duration<double>(clock_type::now() - start).count();
    std::sort(lat.begin(), lat.end());
    double sum = 0;
    for (double v : lat) sum += v;
    const celery::broker_url url = celery::parse_broker_url(co.broker);
    const nlohmann::json out = {
        {"path",
         args.value("--path", url.scheme == celery::broker_url::kind::amqp ? "rabbitmq" : "redis")},
        {"variant", args.value("--variant", "default")},
        {"broker", url.redacted()},
        {"mode", mode},
        {"in_flight", in_flight},
        {"task", task},
        {"work_us", work_us},
        {"payload_bytes", body.size()},
        {"count", count},
        {"p50_us", percentile(lat, 0.50)},
        {"p90_us", percentile(lat, 0.90)},
        {"p99_us", percentile(lat, 0.99)},
        {"p999_us", percentile(lat, 0.999)},
        {"mean_us", sum / static_cast<double>(lat.size())},
        {"throughput_per_s", static_cast<double>(count) / seconds},
    };
    std::cout << out.dump() << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "broker_bench: " << e.what() << "\n";
    return 1;
  }
}
