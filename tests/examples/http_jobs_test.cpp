// End-to-end test of examples/http_jobs: the service runs in-process on a free port and is
// driven with cpp-httplib's client, as a browser or curl would.
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "job_service.hpp"
#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

/// A running service and a client for it.
class http_jobs_test : public ::testing::Test {
 protected:
  void start(http_jobs::service_config config = {}) {
    m_service = std::make_unique<http_jobs::job_service>(config);
    m_port = m_service->bind(0);
    ASSERT_GT(m_port, 0);
    m_thread = std::thread([this] {
      m_service->serve();
    });
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (!m_service->running() && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(1ms);
    ASSERT_TRUE(m_service->running());
  }

  void TearDown() override {
    if (m_service) {
      m_service->stop();
      m_thread.join();
      m_service.reset();
    }
  }

  httplib::Client client() const {
    httplib::Client c("127.0.0.1", m_port);
    c.set_connection_timeout(10s);
    c.set_read_timeout(10s);
    return c;
  }

  /// POST /jobs; returns the id after checking the 202.
  std::string post_job(const json& body) const {
    auto res = client().Post("/jobs", body.dump(), "application/json");
    EXPECT_TRUE(res) << httplib::to_string(res.error());
    if (!res)
      return {};
    EXPECT_EQ(res->status, 202) << res->body;
    const json reply = json::parse(res->body);
    EXPECT_EQ(reply.at("status_url"), "/jobs/" + reply.at("id").get<std::string>());
    return reply.at("id");
  }

  json get_job(const std::string& id) const {
    auto res = client().Get("/jobs/" + id);
    EXPECT_TRUE(res);
    if (!res)
      return {};
    EXPECT_EQ(res->status, 200) << res->body;
    return json::parse(res->body);
  }

  /// Polls until the job is in a terminal state; every answer seen is passed to `each`.
  template <class F>
  json poll(const std::string& id, F&& each) const {
    const auto until = std::chrono::steady_clock::now() + 30s;
    for (;;) {
      json j = get_job(id);
      each(j);
      const std::string s = j.value("state", "");
      if (s == "succeeded" || s == "failed" || s == "cancelled" || s == "expired")
        return j;
      if (std::chrono::steady_clock::now() > until) {
        ADD_FAILURE() << "job " << id << " never finished: " << j.dump();
        return j;
      }
      std::this_thread::sleep_for(2ms);
    }
  }
  json poll(const std::string& id) const {
    return poll(id, [](const json&) {});
  }

  /// The value of one sample of GET /metrics, e.g. sample("offload_tasks_submitted_total",
  /// R"(lane="low")").
  double sample(const std::string& metrics, const std::string& name, const std::string& labels) {
    const std::string prefix = name + "{" + labels + "} ";
    std::istringstream in(metrics);
    for (std::string line; std::getline(in, line);) {
      if (line.rfind(prefix, 0) == 0)
        return std::stod(line.substr(prefix.size()));
    }
    ADD_FAILURE() << "no sample " << prefix;
    return -1;
  }

  std::string metrics_text() const {
    auto res = client().Get("/metrics");
    EXPECT_TRUE(res);
    EXPECT_EQ(res->status, 200);
    return res ? res->body : std::string{};
  }

  std::unique_ptr<http_jobs::job_service> m_service;
  std::thread m_thread;
  int m_port = 0;
};

TEST_F(http_jobs_test, post_answers_202_and_polling_reaches_success) {
  start();
  const std::string id = post_job({{"kind", "csv_report"}, {"rows", 42}});
  const json done = poll(id);
  EXPECT_EQ(done.at("state"), "succeeded") << done.dump();
  EXPECT_EQ(done.at("progress"), 100);
  EXPECT_EQ(done.at("attempts"), 1);
  EXPECT_EQ(done.at("result").at("rows"), 42);
  EXPECT_FALSE(done.contains("error"));
}

TEST_F(http_jobs_test, progress_only_grows_and_transient_failures_are_retried) {
  start({.step_time = 3ms});
  const std::string id = post_job({{"kind", "thumbnail"}, {"image", "cat.jpg"}, {"fail_first", 2}});
  int last = -1;
  std::set<std::string> states;
  const json done = poll(id, [&](const json& j) {
    const int p = j.at("progress");
    EXPECT_GE(p, last) << "progress went back: " << j.dump();
    EXPECT_LE(p, 100);
    last = p;
    states.insert(j.at("state").get<std::string>());
  });
  EXPECT_EQ(done.at("state"), "succeeded") << done.dump();
  EXPECT_EQ(done.at("progress"), 100);
  EXPECT_EQ(done.at("attempts"), 3);  // two transient failures, then success
  EXPECT_EQ(done.at("result").at("thumbnail"), "cat_128.jpg");
  EXPECT_GT(states.size(), 1u);  // seen at least once before it finished
  EXPECT_EQ(sample(metrics_text(), "offload_task_retries_total", R"(lane="normal")"), 2);
}

TEST_F(http_jobs_test, a_thumbnail_that_keeps_failing_lands_in_the_dead_letters) {
  start({.retry_base = 1ms, .thumbnail_attempts = 3});
  const std::string id = post_job({{"kind", "thumbnail"}, {"image", "x.png"}, {"fail_first", 5}});
  const json done = poll(id);
  EXPECT_EQ(done.at("state"), "failed");
  EXPECT_EQ(done.at("attempts"), 3);
  EXPECT_NE(done.at("error").get<std::string>().find("timed out"), std::string::npos);
  auto res = client().Get("/dead-letters");
  ASSERT_TRUE(res);
  const json dead = json::parse(res->body);
  ASSERT_EQ(dead.size(), 1u) << dead.dump();
  EXPECT_NE(dead[0].at("error").get<std::string>().find("job " + id), std::string::npos);
  EXPECT_EQ(dead[0].at("name"), "thumbnail");
  EXPECT_EQ(dead[0].at("attempts"), 3);
}

TEST_F(http_jobs_test, delete_cancels_a_job) {
  start({.workers = 1, .steps = 50, .step_time = 5ms});
  // The first report occupies the only worker; the second waits queued; both are cancelled.
  const std::string running = post_job({{"kind", "csv_report"}});
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (get_job(running).at("state") != "running" && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(1ms);
  const std::string queued = post_job({{"kind", "csv_report"}});
  EXPECT_EQ(get_job(queued).at("state"), "queued");
  for (const std::string& id : {queued, running}) {
    auto res = client().Delete("/jobs/" + id);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 202) << res->body;
    EXPECT_TRUE(json::parse(res->body).at("cancel_requested")) << res->body;
  }
  for (const std::string& id : {queued, running}) {
    const json done = poll(id);
    EXPECT_EQ(done.at("state"), "cancelled") << done.dump();
    EXPECT_LT(done.at("progress"), 100);
  }
  EXPECT_EQ(get_job(queued).at("attempts"), 0);  // never ran
  // Cancelling a finished job changes nothing.
  auto again = client().Delete("/jobs/" + queued);
  ASSERT_TRUE(again);
  EXPECT_FALSE(json::parse(again->body).at("cancel_requested"));
}

TEST_F(http_jobs_test, unknown_ids_answer_404_and_bad_bodies_400) {
  start();
  auto c = client();
  auto check_404 = [](const httplib::Result& res) {
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 404);
    EXPECT_NE(json::parse(res->body).at("error").get<std::string>().find("nope"),
              std::string::npos);
  };
  check_404(c.Get("/jobs/nope"));
  check_404(c.Delete("/jobs/nope"));
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"{not json", "not valid JSON"},
      {"[1, 2]", "JSON object"},
      {R"({"rows": 3})", "missing field 'kind'"},
      {R"({"kind": 7})", "'kind' must be a non-empty string"},
      {R"({"kind": "fax"})", "must be one of"},
      {R"({"kind": "password_reset"})", "missing field 'email'"},
      {R"({"kind": "password_reset", "email": "nobody"})", "email address"},
      {R"({"kind": "csv_report", "rows": -1})", "'rows' must be an integer"},
      {R"({"kind": "thumbnail", "image": "a.png", "width": "big"})", "'width'"},
  };
  for (const auto& [body, why] : bad) {
    auto res = c.Post("/jobs", body, "application/json");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 400) << body;
    EXPECT_NE(json::parse(res->body).at("error").get<std::string>().find(why), std::string::npos)
        << body << " → " << res->body;
  }
  auto unknown = c.Get("/nowhere");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
  EXPECT_TRUE(json::parse(unknown->body).contains("error"));
  // Still serving after all that.
  EXPECT_EQ(poll(post_job({{"kind", "password_reset"}, {"email", "a@b.c"}})).at("state"),
            "succeeded");
  auto health = c.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(json::parse(health->body).at("workers_alive"), 2);
}

TEST_F(http_jobs_test, metrics_count_the_jobs_sent_per_lane) {
  start({.steps = 2, .step_time = 1ms});
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i)
    ids.push_back(post_job({{"kind", "password_reset"}, {"email", "u@x.org"}}));
  for (int i = 0; i < 4; ++i) ids.push_back(post_job({{"kind", "csv_report"}}));
  for (int i = 0; i < 5; ++i) ids.push_back(post_job({{"kind", "thumbnail"}, {"image", "p.jpg"}}));
  for (const auto& id : ids) EXPECT_EQ(poll(id).at("state"), "succeeded");
  m_service->executor().wait_idle();
  const std::string m = metrics_text();
  const std::map<std::string, double> expected = {
      {"critical", 3}, {"high", 0}, {"normal", 5}, {"low", 4}};
  for (const auto& [lane, n] : expected) {
    const std::string l = "lane=\"" + lane + "\"";
    EXPECT_EQ(sample(m, "offload_tasks_submitted_total", l), n) << lane;
    EXPECT_EQ(sample(m, "offload_tasks_completed_total", l + ",outcome=\"succeeded\""), n) << lane;
    EXPECT_EQ(sample(m, "offload_tasks_completed_total", l + ",outcome=\"failed\""), 0) << lane;
    EXPECT_EQ(sample(m, "offload_tasks_queued", l), 0) << lane;
  }
}

TEST_F(http_jobs_test, two_hundred_clients_posting_at_once_are_all_accounted_for) {
  start({.steps = 2, .step_time = 1ms});
  constexpr int k_clients = 200;
  std::vector<std::string> ids(k_clients);
  std::atomic<int> ready{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < k_clients; ++i) {
    clients.emplace_back([&, i] {
      const json body = i % 2 == 0 ? json{{"kind", "password_reset"}, {"email", "c@x.org"}}
                                   : json{{"kind", "csv_report"}, {"rows", i}};
      ready.fetch_add(1);
      while (ready.load() < k_clients) std::this_thread::yield();  // all post at once
      ids[static_cast<std::size_t>(i)] = post_job(body);
    });
  }
  for (auto& t : clients) t.join();
  const std::set<std::string> unique(ids.begin(), ids.end());
  ASSERT_EQ(unique.size(), static_cast<std::size_t>(k_clients));
  ASSERT_EQ(unique.count(""), 0u);
  for (int i = 0; i < k_clients; ++i) {
    const json done = poll(ids[static_cast<std::size_t>(i)]);
    EXPECT_EQ(done.at("state"), "succeeded") << done.dump();
    if (i % 2 == 1) {
      EXPECT_EQ(done.at("result").at("rows"), i);
    }
  }
  m_service->executor().wait_idle();
  const std::string m = metrics_text();
  EXPECT_EQ(sample(m, "offload_tasks_submitted_total", R"(lane="critical")"), k_clients / 2);
  EXPECT_EQ(sample(m, "offload_tasks_submitted_total", R"(lane="low")"), k_clients / 2);
  EXPECT_EQ(sample(m, "offload_tasks_completed_total", R"(lane="critical",outcome="succeeded")"),
            k_clients / 2);
  EXPECT_EQ(sample(m, "offload_tasks_completed_total", R"(lane="low",outcome="succeeded")"),
            k_clients / 2);
}

}  // namespace

namespace {

// A job longer than stuck_after makes its worker stuck: the service stops being ready (/readyz
// 503), but stays live (/healthz 200), so that a liveness probe does not restart it mid-job.
TEST_F(http_jobs_test, a_long_job_makes_the_service_unready_but_never_dead) {
  start({.workers = 2, .steps = 20, .step_time = 10ms, .stuck_after = 50ms});
  const std::string id = post_job({{"kind", "csv_report"}});
  httplib::Client c = client();
  bool unready = false;
  for (int i = 0; i < 200 && !unready; ++i) {
    auto ready = c.Get("/readyz");
    ASSERT_TRUE(ready);
    unready = ready->status == 503;
    auto live = c.Get("/healthz");
    ASSERT_TRUE(live);
    EXPECT_EQ(live->status, 200) << live->body;
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_TRUE(unready) << "the 200 ms job never made /readyz answer 503";
  EXPECT_EQ(poll(id).at("state"), "succeeded");
  auto ready = c.Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200) << ready->body;
}

// Ids are random UUIDs: neither sequential nor short.
TEST_F(http_jobs_test, job_ids_are_random) {
  start({.steps = 1, .step_time = 1ms});
  std::set<std::string> ids;
  for (int i = 0; i < 20; ++i) {
    const std::string id = post_job({{"kind", "password_reset"}, {"email", "a@b.c"}});
    ASSERT_EQ(id.size(), 36u) << id;  // a UUID, as Celery's task ids
    EXPECT_EQ(id.find_first_not_of("-0123456789abcdef"), std::string::npos) << id;
    EXPECT_EQ(id[14], '4') << id;
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 20u);
  EXPECT_EQ(ids.count("j1"), 0u);
}

// The table is bounded: past max_jobs the oldest finished jobs go, and with every job still
// running a POST answers 503.
TEST_F(http_jobs_test, the_job_table_is_bounded) {
  start({.workers = 1, .steps = 1, .step_time = 1ms, .max_jobs = 4});
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) {
    ids.push_back(post_job({{"kind", "password_reset"}, {"email", "a@b.c"}}));
    EXPECT_EQ(poll(ids.back()).at("state"), "succeeded");
  }
  const std::string fifth = post_job({{"kind", "password_reset"}, {"email", "a@b.c"}});
  EXPECT_EQ(client().Get("/jobs/" + ids[0])->status, 404);  // the oldest finished one went
  EXPECT_EQ(poll(fifth).at("state"), "succeeded");
  // Fill the table with jobs that cannot finish yet (the one worker is held by the first).
  m_service->stop();
  m_thread.join();
  m_service.reset();
  start({.workers = 1, .steps = 40, .step_time = 5ms, .max_jobs = 3});
  for (int i = 0; i < 3; ++i) (void)post_job({{"kind", "csv_report"}});
  auto full = client().Post("/jobs", json{{"kind", "csv_report"}}.dump(), "application/json");
  ASSERT_TRUE(full);
  EXPECT_EQ(full->status, 503) << full->body;
}

}  // namespace
