// offload_roundtrip: the brokered benchmark's job, in process: submit a task that does the same
// work (none, or spin N µs) to an offload::executor and wait for its future. Prints one JSON
// object with the same fields as broker_bench.
//
//   offload_roundtrip [--mode pingpong|pipelined] [--in-flight 64] [--work-us 0] [--count 20000]
//                     [--warmup 1000] [--payload 100] [--cold] [--workers 2] [--variant NAME]
// --cold sleeps 5 ms before each submission, so the workers have gone to sleep (ping-pong only).
#include <algorithm>
#include <chrono>
#include <deque>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include <offload/broker/cli_args.hpp>
#include <offload/offload.hpp>

namespace {

using clock_type = std::chrono::steady_clock;

/// celery_app.py's noop (and celery_worker's): the payload in, "ok" out.
std::string noop(const std::string& /*payload*/) {
  return "ok";
}

/// celery_app.py's spin_us (and celery_worker's): burns `us` µs of CPU.
std::string spin_us(long us) {
  const auto until = clock_type::now() + std::chrono::microseconds(us);
  while (clock_type::now() < until) {
  }
  return "ok";
}

double percentile(const std::vector<double>& sorted, double q) {
  const auto i = static_cast<std::size_t>(q * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(i, sorted.size() - 1)];
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const offload::broker::cli_args args(argc, argv);
    const std::string mode = args.value("--mode", "pingpong");
    const long in_flight = mode == "pipelined" ? args.number("--in-flight", 64) : 1;
    const long work_us = args.number("--work-us", 0);
    const long count = args.number("--count", 20000);
    const long warmup = args.number("--warmup", 1000);
    const auto payload = static_cast<std::size_t>(args.number("--payload", 100));
    const bool cold = args.flag("--cold");
    const auto workers = static_cast<unsigned>(args.number("--workers", 2));
    if (count <= 0 || in_flight <= 0 || (mode != "pingpong" && mode != "pipelined")) {
      throw std::invalid_argument("need --count > 0 and --mode pingpong|pipelined");
    }
    // The same arguments the brokered paths carry: the payload, and the work in µs.
    const std::string task = work_us > 0 ? "spin_us" : "noop";
    const std::string body(payload, 'x');

    offload::executor ex{offload::executor_options{.workers = workers}};
    auto run = [&](long n) {
      std::vector<double> lat;
      lat.reserve(static_cast<std::size_t>(n));
      std::deque<std::pair<clock_type::time_point, offload::future<std::string>>> pending;
      long launched = 0;
      while (static_cast<long>(lat.size()) < n) {
        while (launched < n && static_cast<long>(pending.size()) < in_flight) {
          if (cold) {
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
          }
          const auto t0 = clock_type::now();
          pending.emplace_back(t0, ex.submit([work_us, body] {
            return work_us > 0 ? spin_us(work_us) : noop(body);
          }));
          ++launched;
        }
        auto& [t0, f] = pending.front();
        if (f.get() != "ok") {
          throw std::runtime_error("task failed");
        }
        lat.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
        pending.pop_front();
      }
      return lat;
    };
    run(warmup);
    const auto start = clock_type::now();
    std::vector<double> lat = run(count);
    const double seconds = std::chrono::duration<double>(clock_type::now() - start).count();
    std::sort(lat.begin(), lat.end());
    double sum = 0;
    for (double v : lat) {
      sum += v;
    }
    const nlohmann::json out = {
        {"path", "offload"},
        {"variant", args.value("--variant", cold ? "cold" : "default")},
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
    std::cerr << "offload_roundtrip: " << e.what() << "\n";
    return 1;
  }
}
