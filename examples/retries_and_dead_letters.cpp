// retries_and_dead_letters: transient failures are retried with backoff; failures that stay, or
// that retry_if refuses, land in the dead letters, from where a task can be requeued.
//
//   flaky      ✗ ✗ ✓                    → succeeded on attempt 3
//   permanent  ✗ (retry_if: no)         → dead letter after 1 attempt
//   broken     ✗ ✗ ✗ (max_attempts 3)   → dead letter after 3 attempts ──requeue (fixed)──▶ ✓
//   polite     retry_after(5 ms) ✓      → the task chose its own delay
//
// Exits 0 only if every outcome holds.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>

#include <offload/offload.hpp>

using namespace std::chrono_literals;

namespace {

struct transient_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

int failures = 0;
void check(bool ok, const char* what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what);
  failures += ok ? 0 : 1;
}

}  // namespace

int main() {
  std::atomic<int> dead_hook_calls{0};
  offload::executor ex{
      offload::executor_options{.workers = 2, .on_dead_letter = [&](const offload::dead_letter&) {
                                  dead_hook_calls.fetch_add(1);
                                }}};

  const offload::retry_policy policy{.max_attempts = 3,
                                     .backoff = offload::backoff::exponential,  // 5 ms, then 10 ms
                                     .base_delay = 5ms,
                                     .max_delay = 50ms,
                                     .jitter = offload::jitter::equal,
                                     .retry_if = [](const std::exception_ptr& e) {
                                       try {
                                         std::rethrow_exception(e);
                                       } catch (const transient_error&) {
                                         return true;
                                       } catch (...) {
                                         return false;
                                       }
                                     }};

  auto flaky = ex.submit(offload::task_options{.retry = policy, .name = "flaky"}, [] {
    if (offload::this_task::attempt() < 3)
      throw transient_error("connection reset");
    return offload::this_task::attempt();
  });
  check(flaky.get() == 3, "flaky succeeded on its third attempt");

  auto permanent = ex.submit(offload::task_options{.retry = policy, .name = "permanent"}, [] {
    throw std::invalid_argument("malformed input");  // retrying would not help
  });
  try {
    permanent.get();
    check(false, "permanent failed");
  } catch (const std::invalid_argument&) {
    check(true, "permanent failed at once with its own exception");
  }

  std::atomic<bool> fixed{false};
  auto broken = ex.submit(offload::task_options{.retry = policy, .name = "broken"}, [&fixed] {
    if (!fixed)
      throw transient_error("upstream down");
  });
  try {
    broken.get();
  } catch (const transient_error&) {
    check(true, "broken threw its last exception after 3 attempts");
  }

  auto polite = ex.submit(offload::task_options{.retry = policy, .name = "polite"}, [] {
    if (offload::this_task::attempt() == 1)
      offload::this_task::retry_after(5ms);  // e.g. a Retry-After header
    return std::string("done");
  });
  check(polite.get() == "done", "polite ran again after the delay it asked for");

  const auto dead = ex.dead_letters();
  check(dead.size() == 2, "two dead letters");
  for (const offload::dead_letter& d : dead)
    std::printf(
        "     dead letter: %s, %u attempt(s): %s\n", d.name.c_str(), d.attempts, d.error.c_str());
  check(dead.size() == 2 && dead[0].name == "permanent" && dead[0].attempts == 1,
        "permanent: 1 attempt");
  check(dead.size() == 2 && dead[1].name == "broken" && dead[1].attempts == 3,
        "broken: 3 attempts");
  check(dead_hook_calls.load() == 2, "on_dead_letter called for each");

  fixed = true;  // the upstream is back: run the broken task again
  check(dead.size() == 2 && ex.requeue(dead[1]), "requeued broken");
  ex.wait_idle();
  check(ex.dead_letters().size() == 1, "the requeued task succeeded and left the store");
  check(ex.metrics().of(offload::lane::normal).retries >= 4, "retries counted in the metrics");
  return failures == 0 ? 0 : 1;
}
