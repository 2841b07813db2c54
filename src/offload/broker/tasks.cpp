#include <charconv>
#include <chrono>

#include <offload/broker/tasks.hpp>

namespace offload::broker {
namespace {

std::string spin_us(const std::string& body) {
  long long us = 0;
  auto [p, ec] = std::from_chars(body.data(), body.data() + body.size(), us);
  if (ec != std::errc{} || us < 0) {
    throw std::invalid_argument("spin_us: body must start with a number of microseconds");
  }
  const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
  while (std::chrono::steady_clock::now() < until) {
  }
  return "ok";
}

}  // namespace

std::string run_task(const message& m) {
  if (m.task == "noop") {
    return "ok";
  }
  if (m.task == "spin_us") {
    return spin_us(m.body);
  }
  if (m.task == "echo") {
    return m.body;
  }
  if (m.task == "fail") {
    throw std::runtime_error("task 'fail' failed on purpose");
  }
  throw unknown_task("unknown task '" + m.task + "'");
}

}  // namespace offload::broker
