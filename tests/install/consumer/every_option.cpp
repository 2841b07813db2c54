// Compiled into every consumer next to README.md's first example, at the same -O3 -Wall -Wextra
// -Werror: every field of every options aggregate set, next to an executor that uses them, so a
// warning any of offload's headers raises in a consumer's build fails it. Runs before main().
#include <atomic>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>

#include <offload/offload.hpp>

namespace {

using namespace std::chrono_literals;

int every_option_used() {
  std::atomic<int> events{0};
  std::atomic<int> attempts{0};
  offload::executor_options options{
      .workers = 2,
      .placement = offload::placement::none,
      .spin_before_park = 10us,
      .deque_capacity = 128,
      .on_task_error = [](std::exception_ptr) {},
      .lanes = {offload::lane_options{.capacity = 64,
                                      .overflow = offload::overflow_policy::block,
                                      .block_timeout = 100ms},
                offload::lane_options{},
                offload::lane_options{},
                offload::lane_options{}},
      .starvation_guard = 16,
      .stuck_after = 5s,
      .timing_sample_interval = 8,
      .hooks = offload::task_hooks{.on_finished =
                                       [&](const offload::task_event&) {
                                         ++events;
                                       }},
      .dead_letters = offload::dead_letter_options{.max_count = 16},
      .on_dead_letter = [](const offload::dead_letter&) {},
      .clock = nullptr,
      .fibers = true,
      .fiber_stack_size = std::size_t{256} << 10,
  };
  offload::executor ex{std::move(options)};
  auto ok = ex.submit(
      offload::task_options{
          .lane = offload::lane::high,
          .retry = offload::retry_policy{.max_attempts = 3,
                                         .backoff = offload::backoff::linear,
                                         .base_delay = 1ms,
                                         .max_delay = 5ms,
                                         .jitter = offload::jitter::equal,
                                         .retry_if =
                                             [](const std::exception_ptr&) {
                                               return true;
                                             }},
          .delay = 1ms,
          .deadline = offload::clock::now() + 10s,
          .key = "every-option:" + std::to_string(std::rand() % 2),
          .name = std::string("every_option"),
          .rate = offload::rate_limit{.per_second = 1000, .burst = 10},
      },
      [&attempts] {
        if (++attempts < 2)
          throw std::runtime_error("first attempt fails");
        return attempts.load();
      });
  // Defaulted nested options (retry, hooks) next to a later field whose initializer may throw.
  auto named = ex.submit(offload::task_options{.name = "resize"}, [] {
    return 1;
  });
  offload::executor manual{
      offload::executor_options{.workers = 1, .clock = std::make_shared<offload::manual_clock>()}};
  auto plain = manual.submit([] {
    return 1;
  });
  const int result = ok.get() + named.get() + plain.get() - 2;
  ex.wait_idle();
  return result == 2 && events.load() >= 1 ? 0 : 1;
}

const int g_every_option_status = [] {
  const int status = every_option_used();
  if (status != 0)
    std::abort();
  return status;
}();

}  // namespace
