// http_jobs: a small job service. POST /jobs answers 202 with an id; GET /jobs/<id> polls it.
//
//   http_jobs --port 8080 [--workers 2] [--step-ms 5]
//   curl -s -XPOST localhost:8080/jobs -d '{"kind": "csv_report", "rows": 5000}'
//   curl -s localhost:8080/jobs/<id>          (the id the POST answered)
//   curl -s -XPOST localhost:8080/jobs -d '{"kind": "thumbnail", "image": "cat.jpg",
//                                            "fail_first": 2}'
//   curl -s -XDELETE localhost:8080/jobs/<id>
//   curl -s localhost:8080/metrics; curl -s localhost:8080/healthz (live); .../readyz (ready)
//   curl -s localhost:8080/dead-letters
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "job_service.hpp"

namespace {

http_jobs::job_service* g_service = nullptr;

extern "C" void on_signal(int) {
  if (g_service != nullptr)
    g_service->stop();  // httplib's stop() only shuts the listening socket down
}

int usage(const char* argv0) {
  std::fprintf(stderr, "usage: %s --port N [--workers N] [--step-ms N]\n", argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  int port = -1;
  http_jobs::service_config config;
  for (int i = 1; i < argc; ++i) {
    const bool has_value = i + 1 < argc;
    if (std::strcmp(argv[i], "--port") == 0 && has_value) {
      port = std::atoi(argv[++i]);
    } else if (std::strcmp(argv[i], "--workers") == 0 && has_value) {
      config.workers = static_cast<unsigned>(std::atoi(argv[++i]));
    } else if (std::strcmp(argv[i], "--step-ms") == 0 && has_value) {
      config.step_time = std::chrono::milliseconds(std::atoi(argv[++i]));
    } else {
      return usage(argv[0]);
    }
  }
  if (port < 0 || port > 65535)
    return usage(argv[0]);

  http_jobs::job_service service(config);
  const int bound = service.bind(port);
  if (bound < 0) {
    std::fprintf(stderr, "http_jobs: cannot listen on 127.0.0.1:%d\n", port);
    return 1;
  }
  g_service = &service;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::printf("http_jobs: listening on http://127.0.0.1:%d\n", bound);
  std::fflush(stdout);
  service.serve();
  g_service = nullptr;
  std::printf("http_jobs: stopped; draining the jobs left\n");
  return 0;  // ~job_service drains the executor
}
