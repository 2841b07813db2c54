// upload_pipeline: the video story. Each upload gets a thumbnail and three renditions (CPU work
// standing in for a transcoder), then one notification. Transient failures are injected and
// retried; the notification carries a key, so a retried or duplicated upload never mails twice.
//
//   upload ──┬─▶ thumbnail (retried) ─────────────┐
//            ├─▶ transcode 360p ─┐                 ├─when_all─then─▶ notify (key "notify:<video>",
//            ├─▶ transcode 720p ─┼─when_all────────┘                  retried, sent once)
//            └─▶ transcode 1080p ┘
//
// The client uploads video "v2" twice (it timed out and retried): two pipelines, one mail.
// Exits 0 only if every check holds.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include <offload/offload.hpp>

using namespace std::chrono_literals;

namespace {

class transient_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

bool is_transient(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const transient_error&) {
    return true;
  } catch (...) {
    return false;
  }
}

const offload::retry_policy k_retry{.max_attempts = 3,
                                    .backoff = offload::backoff::exponential,
                                    .base_delay = 2ms,
                                    .max_delay = 20ms,
                                    .jitter = offload::jitter::full,
                                    .retry_if = is_transient};

/// The "transcoder": a checksum over `frames` pseudo-random frames of `height` lines.
std::uint64_t transcode(const std::string& video, int height, int frames) {
  std::uint64_t h = std::hash<std::string>{}(video) ^ static_cast<std::uint64_t>(height);
  constexpr std::uint64_t k_fnv_prime = 0x100000001b3;
  for (int f = 0; f < frames; ++f) {
    for (std::uint64_t line = 0; line < static_cast<std::uint64_t>(height); ++line)
      h = (h ^ line) * k_fnv_prime;  // FNV-1a step
  }
  return h;
}

struct rendition {
  int height = 0;
  std::uint64_t checksum = 0;
};

/// What the outside world saw: mails sent and failures injected.
struct world {
  std::mutex mutex;
  std::map<std::string, int> mails;  // video → notifications sent
  std::atomic<int> injected{0};
  std::atomic<int> thumbnail_calls{0};
  std::atomic<int> notify_calls{0};
};

offload::future<std::string> upload(offload::executor& ex, world& w, const std::string& video) {
  // Thumbnail: the image store times out on every first attempt.
  auto thumb = ex.submit(offload::task_options{.retry = k_retry, .name = "thumbnail"}, [&w, video] {
    w.thumbnail_calls.fetch_add(1);
    if (offload::this_task::attempt() == 1) {
      w.injected.fetch_add(1);
      throw transient_error("image store timed out");
    }
    return video + ".jpg";
  });
  std::vector<offload::future<rendition>> renditions;
  for (int height : {360, 720, 1080}) {
    renditions.push_back(ex.submit(offload::task_options{.name = "transcode"}, [video, height] {
      return rendition{height, transcode(video, height, 200)};
    }));
  }
  return offload::when_all(std::move(thumb), offload::when_all(std::move(renditions)))
      .then([&ex, &w, video](auto parts) {
        const std::string thumbnail = std::get<0>(parts).get();  // rethrows a failed step
        std::uint64_t sum = 0;
        for (auto& r : std::get<1>(parts).get()) sum ^= r.get().checksum;
        // One notification per video: while one with this key is pending (its 50 ms batching
        // delay, its retries) a second submission joins it instead of sending again.
        offload::task_options notify{
            .retry = k_retry, .delay = 50ms, .key = "notify:" + video, .name = "notify"};
        return ex
            .submit(notify,
                    [&w, video, thumbnail, sum] {
                      w.notify_calls.fetch_add(1);
                      if (offload::this_task::attempt() == 1) {  // the mail server is busy
                        w.injected.fetch_add(1);
                        throw transient_error("SMTP 421, try again");
                      }
                      std::lock_guard lock(w.mutex);
                      ++w.mails[video];  // sent; nothing after this can fail
                      return "mailed " + video + " (" + thumbnail + ", " + std::to_string(sum) +
                             ")";
                    })
            .get();  // waiting inside a task helps run others: no deadlock
      });
}

}  // namespace

int main() {
  offload::executor ex{offload::executor_options{.workers = 2}};
  world w;

  const std::vector<std::string> videos = {"v1", "v2", "v3"};
  std::vector<offload::future<std::string>> pipelines;
  for (const auto& v : videos) pipelines.push_back(upload(ex, w, v));
  pipelines.push_back(upload(ex, w, "v2"));  // the client's retry of v2

  int failures = 0;
  auto check = [&](bool ok, const std::string& what) {
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
    failures += ok ? 0 : 1;
  };
  for (auto& p : pipelines) {
    try {
      std::printf("     %s\n", p.get().c_str());
    } catch (const std::exception& e) {
      check(false, std::string("pipeline failed: ") + e.what());
    }
  }
  ex.wait_idle();

  for (const auto& v : videos) check(w.mails[v] == 1, v + " mailed exactly once");
  check(w.thumbnail_calls.load() == 8, "each of 4 thumbnails failed once and was retried");
  check(w.notify_calls.load() == 6, "3 notifications, each retried once (v2's second joined)");
  check(w.injected.load() == 4 + 3, "7 transient failures injected");
  const offload::metrics_snapshot m = ex.metrics();
  check(m.of(offload::lane::normal).retries == 7, "7 retries counted in the metrics");
  check(ex.dead_letters().empty(), "no dead letters");
  return failures == 0 ? 0 : 1;
}
