// broker_bench: round trips of named tasks through a broker and offload_worker, as a caller
// sees them (publish → worker runs the task → reply received). Prints one JSON object.
//
//   broker_bench --broker redis|rabbitmq --port N [--reliable] [--persistent] [--confirms]
//                --queue Q [--mode pingpong|pipelined] [--in-flight 64] [--work-us 0]
//                [--count 2000] [--warmup 200] [--payload 100] [--timeout-ms 10000]
//                [--path redis] [--variant default]
// --work-us 0 sends the task "noop", otherwise "spin_us" with that many microseconds; either way
// the body is --payload bytes. Exits 1 with a message naming the broker if it fails or a reply
// does not come within --timeout-ms.
#include <algorithm>
#include <chrono>
#include <iostream>
#include <map>
#include <vector>

#include <nlohmann/json.hpp>

#include <offload/broker/cli_args.hpp>
#include <offload/broker/rpc_client.hpp>

namespace {

using clock_type = std::chrono::steady_clock;
using offload::broker::broker_error;

std::string make_body(long work_us, std::size_t payload) {
  std::string body = work_us > 0 ? std::to_string(work_us) + " " : std::string();
  if (body.size() < payload) {
    body.append(payload - body.size(), 'x');
  }
  return body;
}

double percentile(std::vector<double>& sorted, double q) {
  if (sorted.empty()) {
    return 0;
  }
  const auto i = static_cast<std::size_t>(q * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(i, sorted.size() - 1)];
}

/// Runs `count` round trips with up to `in_flight` outstanding; returns latencies in µs.
std::vector<double> run(offload::broker::rpc_client& client,
                        const std::string& task,
                        const std::string& body,
                        long count,
                        long in_flight,
                        std::chrono::milliseconds timeout) {
  std::vector<double> lat;
  lat.reserve(static_cast<std::size_t>(count));
  std::map<std::string, clock_type::time_point> sent;
  long launched = 0;
  while (static_cast<long>(lat.size()) < count) {
    while (launched < count && static_cast<long>(sent.size()) < in_flight) {
      const auto t0 = clock_type::now();
      sent.emplace(client.send(task, body), t0);
      ++launched;
    }
    auto reply = client.next_reply(timeout);
    if (!reply) {
      throw broker_error("no reply within " + std::to_string(timeout.count()) + " ms (" +
                         std::to_string(sent.size()) + " in flight): is the worker running?");
    }
    const auto it = sent.find(reply->correlation_id);
    if (it == sent.end()) {
      continue;  // a duplicate (at-least-once) or a stale reply
    }
    if (reply->task != "ok") {
      throw broker_error("task failed: " + reply->error);
    }
    lat.push_back(
        std::chrono::duration<double, std::micro>(clock_type::now() - it->second).count());
    sent.erase(it);
  }
  return lat;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace offload::broker;
  try {
    const cli_args args(argc, argv);
    const connect_options conn = args.connection();
    const std::string mode = args.value("--mode", "pingpong");
    const long in_flight = mode == "pipelined" ? args.number("--in-flight", 64) : 1;
    const long work_us = args.number("--work-us", 0);
    const long count = args.number("--count", 2000);
    const long warmup = args.number("--warmup", 200);
    const auto payload = static_cast<std::size_t>(args.number("--payload", 100));
    const std::chrono::milliseconds timeout(args.number("--timeout-ms", 10000));
    if (count <= 0 || in_flight <= 0 || (mode != "pingpong" && mode != "pipelined")) {
      throw std::invalid_argument("need --count > 0 and --mode pingpong|pipelined");
    }
    const std::string task = work_us > 0 ? "spin_us" : "noop";
    const std::string body = make_body(work_us, payload);

    std::unique_ptr<transport> t = open_transport(conn);
    rpc_client client(*t, args.value("--queue", "tasks"));
    if (warmup > 0) {
      run(client, task, body, warmup, in_flight, timeout);
    }
    const auto start = clock_type::now();
    std::vector<double> lat = run(client, task, body, count, in_flight, timeout);
    const double seconds = std::chrono::duration<double>(clock_type::now() - start).count();
    std::sort(lat.begin(), lat.end());
    double sum = 0;
    for (double v : lat) {
      sum += v;
    }
    const nlohmann::json out = {
        {"path", args.value("--path", conn.broker)},
        {"variant", args.value("--variant", "default")},
        {"broker", conn.broker},
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
