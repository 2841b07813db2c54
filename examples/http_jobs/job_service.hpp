// job_service: the HTTP 202 + polling story. A web endpoint must not block on a 45-second CSV
// report or a thumbnail: it accepts the job, answers 202 with an id, and the client polls.
//
//   POST /jobs {"kind": ...} ──▶ offload::result_store<json>::submit ──▶ 202 {id}
//                                   │ (lane by kind, retry for thumbnails)
//                                   ▼
//                             [offload workers] ── this_task::set_progress ──▶ the store
//   GET /jobs/<id> ◀── store.find(id): state, progress, attempts, then the result or error
//
// Header-only so that the end-to-end test (tests/examples/http_jobs_test.cpp) runs the same
// service in-process. Not thread-safe to construct and destroy concurrently; the handlers are.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <httplib.h>
#include <netinet/in.h>
#include <nlohmann/json.hpp>
#include <sys/socket.h>

#include <offload/metrics_json.hpp>
#include <offload/offload.hpp>

namespace http_jobs {

using json = nlohmann::json;
using namespace std::chrono_literals;

/// How long the simulated work takes, and how the pool is sized. The defaults keep a job in the
/// tens of milliseconds; the real thing would take seconds.
struct service_config {
  unsigned workers = 2;
  unsigned steps = 10;                       ///< progress updates per job (csv, thumbnail)
  std::chrono::milliseconds step_time{5};    ///< work per step
  std::chrono::milliseconds retry_base{10};  ///< thumbnail backoff: 10, 20, 40 ms
  unsigned thumbnail_attempts = 4;           ///< total attempts of a thumbnail
  /// A worker running one task longer than this is "stuck": /readyz answers 503 (send no new
  /// traffic), /healthz does not (a liveness probe must not restart the process mid-job and lose
  /// the queue). Set it above the longest job you expect; a 45 s report needs more than 45 s.
  std::chrono::milliseconds stuck_after{std::chrono::minutes(2)};
  /// Finished jobs stay pollable this long after they finished.
  std::chrono::milliseconds keep_finished{std::chrono::minutes(10)};
  /// At most this many jobs in the table; past it, the oldest finished ones go first, and a
  /// POST that still finds no room answers 503.
  std::size_t max_jobs = 10'000;
};

/// A failure worth retrying (a storage timeout, a flaky upstream).
class transient_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A request body the service refuses; answered with 400 and the message.
class bad_request : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class job_service {
 public:
  explicit job_service(service_config config = {})
      : m_config(config),
        m_executor(offload::executor_options{.workers = config.workers,
                                             .stuck_after = config.stuck_after}),
        m_jobs(m_executor,
               offload::result_store_options{.keep_for = config.keep_finished,
                                             .max_entries = config.max_jobs}) {
    routes();
  }

  ~job_service() { stop(); }
  job_service(const job_service&) = delete;
  job_service& operator=(const job_service&) = delete;

  /// Binds to `port` on 127.0.0.1 (0: any free port) and returns the port, -1 on failure.
  int bind(int port) {
    const int bound = port == 0 ? m_server.bind_to_any_port("127.0.0.1")
                                : (m_server.bind_to_port("127.0.0.1", port) ? port : -1);
    if (bound > 0)
      widen_backlog(bound);
    return bound;
  }
  /// Serves until stop(). Blocks.
  bool serve() { return m_server.listen_after_bind(); }
  /// Stops serving (from any thread); the executor drains what is left when destroyed.
  void stop() { m_server.stop(); }
  bool running() const { return m_server.is_running(); }

  offload::executor& executor() { return m_executor; }

 private:
  /// cpp-httplib listens with a backlog of 5 (CPPHTTPLIB_LISTEN_BACKLOG, fixed when Debian's
  /// libcpp-httplib was compiled): a burst of connections overflows it and clients see reset
  /// connections. listen() again on the listening socket raises the backlog (Linux); the socket
  /// is found by its port, since httplib does not expose it.
  static void widen_backlog(int port) {
    for (int fd = 0; fd < 1024; ++fd) {
      sockaddr_in addr{};
      socklen_t len = sizeof addr;
      int listening = 0;
      socklen_t flag_len = sizeof listening;
      if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0 &&
          addr.sin_family == AF_INET && ntohs(addr.sin_port) == port &&
          ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &flag_len) == 0 &&
          listening != 0) {
        ::listen(fd, SOMAXCONN);
        return;
      }
    }
  }

  // ---- job kinds -------------------------------------------------------------------------------

  /// A step loop standing in for real work: reports progress, stops early when cancelled.
  void work(unsigned steps) const {
    for (unsigned i = 1; i <= steps; ++i) {
      if (offload::this_task::stop_requested())
        throw offload::cancelled("offload: job cancelled while running");
      std::this_thread::sleep_for(m_config.step_time);
      offload::this_task::set_progress(i * 100.0 / steps);  // the store keeps the highest
    }
  }

  static std::string string_field(const json& body, const char* name) {
    auto it = body.find(name);
    if (it == body.end())
      throw bad_request(std::string("missing field '") + name + "'");
    if (!it->is_string() || it->get_ref<const std::string&>().empty())
      throw bad_request(std::string("field '") + name + "' must be a non-empty string");
    return it->get<std::string>();
  }

  static std::int64_t int_field(
      const json& body, const char* name, std::int64_t fallback, std::int64_t lo, std::int64_t hi) {
    auto it = body.find(name);
    if (it == body.end())
      return fallback;
    if (!it->is_number_integer() || it->get<std::int64_t>() < lo || it->get<std::int64_t>() > hi)
      throw bad_request(std::string("field '") + name + "' must be an integer in [" +
                        std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return it->get<std::int64_t>();
  }

  /// Submits the job's task; returns its id. Throws bad_request for a body its kind refuses,
  /// offload::rejected when the store or the executor refuses it.
  std::string submit(const std::string& kind, const json& body) {
    // No key: the job id is unique already; a failure names its job through its id.
    offload::task_options options{.name = kind};
    if (kind == "password_reset") {
      std::string email = string_field(body, "email");
      if (email.find('@') == std::string::npos)
        throw bad_request("field 'email' must be an email address");
      options.lane = offload::lane::critical;  // a user is waiting for this mail
      return m_jobs.submit(options, [this, email] {
        work(1);
        return json{{"sent_to", email}};
      });
    }
    if (kind == "csv_report") {
      const auto rows = int_field(body, "rows", 1000, 1, 10'000'000);
      options.lane = offload::lane::low;  // nobody minds if it waits behind interactive work
      return m_jobs.submit(options, [this, rows] {
        work(m_config.steps);
        return json{{"rows", rows},
                    {"url", "/reports/" + std::string(offload::this_task::id()) + ".csv"}};
      });
    }
    if (kind == "thumbnail") {
      std::string image = string_field(body, "image");
      const auto width = int_field(body, "width", 128, 1, 4096);
      // Transient failures to inject: the first `fail_first` attempts time out.
      const auto fail_first = int_field(body, "fail_first", 0, 0, 100);
      options.retry = offload::retry_policy{.max_attempts = m_config.thumbnail_attempts,
                                            .backoff = offload::backoff::exponential,
                                            .base_delay = m_config.retry_base,
                                            .max_delay = m_config.retry_base * 8,
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
      return m_jobs.submit(options, [this, image, width, fail_first] {
        const unsigned attempt = offload::this_task::attempt();
        work(m_config.steps / 2);
        if (attempt <= static_cast<std::uint64_t>(fail_first))
          throw transient_error("image store timed out (job " +
                                std::string(offload::this_task::id()) + ", attempt " +
                                std::to_string(attempt) + ")");
        work(m_config.steps);
        const auto dot = image.rfind('.');
        return json{{"thumbnail",
                     image.substr(0, dot) + "_" + std::to_string(width) +
                         (dot == std::string::npos ? "" : image.substr(dot))}};
      });
    }
    throw bad_request("field 'kind' must be one of thumbnail, csv_report, password_reset");
  }

  /// The job as JSON.
  static json describe(const offload::result_view<json>& j) {
    const offload::task_state state = j.state();
    json out{{"id", j.id()},
             {"kind", j.name()},
             {"state", std::string(offload::to_string(state))},
             {"progress", static_cast<int>(j.progress().value_or(0))},
             {"attempts", j.attempts()}};
    if (state == offload::task_state::succeeded)
      out["result"] = j.value();
    else if (const auto e = j.error())
      out["error"] = e->message;
    return out;
  }

  // ---- HTTP ------------------------------------------------------------------------------------

  static void reply(httplib::Response& res, int status, const json& body) {
    res.status = status;
    res.set_content(body.dump(), "application/json");
  }
  static void reply_error(httplib::Response& res, int status, const std::string& what) {
    reply(res, status, json{{"error", what}});
  }

  void routes() {
    m_server.Post("/jobs", [this](const httplib::Request& req, httplib::Response& res) {
      const json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
      if (body.is_discarded())
        return reply_error(res, 400, "body is not valid JSON");
      if (!body.is_object())
        return reply_error(res, 400, "body must be a JSON object");
      std::string id;
      try {
        id = submit(string_field(body, "kind"), body);
      } catch (const bad_request& e) {
        return reply_error(res, 400, e.what());
      } catch (const offload::rejected& e) {
        return reply_error(res, 503, std::string(e.what()) + "; retry later");
      }
      res.set_header("Location", "/jobs/" + id);
      reply(res, 202, json{{"id", id}, {"status_url", "/jobs/" + id}});
    });

    m_server.Get(R"(/jobs/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
      const auto j = m_jobs.find(req.matches[1]);
      if (!j)
        return reply_error(res, 404, "no job with id '" + std::string(req.matches[1]) + "'");
      reply(res, 200, describe(*j));
    });

    m_server.Delete(R"(/jobs/([^/]+))",
                    [this](const httplib::Request& req, httplib::Response& res) {
                      const std::string id = req.matches[1];
                      const auto before = m_jobs.find(id);
                      if (!before)
                        return reply_error(res, 404, "no job with id '" + id + "'");
                      // A queued or retrying job never runs again; a running one sees
                      // stop_requested() at its next step.
                      const bool cancelled = m_jobs.cancel(id);
                      const auto after = m_jobs.find(id);  // gone only if evicted meanwhile
                      const offload::result_view<json>& now = after ? *after : *before;
                      json out = describe(now);
                      const bool requested = cancelled || !offload::is_terminal(now.state());
                      out["cancel_requested"] = requested;
                      reply(res, 202, out);
                    });

    m_server.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(offload::to_prometheus(m_executor.metrics()), "text/plain; version=0.0.4");
    });

    // Liveness: the pool still makes progress (a worker alive and not stuck). A long job makes
    // its worker stuck without making the process dead.
    m_server.Get("/healthz", [this](const httplib::Request&, httplib::Response& res) {
      const offload::health_report h = m_executor.health();
      res.status = h.live() ? 200 : 503;
      res.set_content(offload::to_json(h), "application/json");
    });
    // Readiness: every worker alive and none stuck; a load balancer sends work elsewhere while
    // a worker overruns stuck_after.
    m_server.Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
      const offload::health_report h = m_executor.health();
      res.status = h.healthy() ? 200 : 503;
      res.set_content(offload::to_json(h), "application/json");
    });

    m_server.Get("/dead-letters", [this](const httplib::Request&, httplib::Response& res) {
      json out = json::array();
      for (const offload::dead_letter& d : m_executor.dead_letters()) {
        out.push_back(json{{"id", d.id},
                           {"name", d.name},
                           {"attempts", d.attempts},
                           {"error", d.error},
                           {"lane", std::string(offload::to_string(d.lane))}});
      }
      reply(res, 200, out);
    });

    // Unknown routes and anything a handler throws still answer JSON; the server keeps going.
    m_server.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (res.body.empty())
        reply_error(res, res.status, "no route for " + req.method + " " + req.path);
    });
    m_server.set_exception_handler(
        [](const httplib::Request&, httplib::Response& res, std::exception_ptr e) {
          std::string what = "internal error";
          try {
            std::rethrow_exception(e);
          } catch (const std::exception& ex) {
            what = ex.what();
          } catch (...) {
          }
          reply_error(res, 500, what);
        });
  }

  service_config m_config;
  offload::executor m_executor;        // declared before the store and the server
  offload::result_store<json> m_jobs;  // ids, states, progress and results; bounded
  httplib::Server m_server;            // its handlers use the store and the executor
};

}  // namespace http_jobs
