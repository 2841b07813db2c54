// offload::to_prometheus(): exactly the metric names, types and labels of the table in
// design.md (docs/metrics.md), values equal to the snapshot, and text that passes
// `promtool check metrics` (Debian package `prometheus`).

#include <array>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "metrics_test_support.hpp"
#include "unit/test_support.hpp"
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <offload/offload.hpp>

#ifndef OFFLOAD_PROMTOOL_PATH
#define OFFLOAD_PROMTOOL_PATH ""
#endif

namespace {

using namespace std::chrono_literals;
using offload::lane;

struct family_spec {
  std::string type;
  std::set<std::string> labels;  // without `le`
};

/// The table of design.md, "Prometheus names".
const std::map<std::string, family_spec>& expected_families() {
  static const std::map<std::string, family_spec> table{
      {"offload_tasks_submitted_total", {"counter", {"lane"}}},
      {"offload_tasks_rejected_total", {"counter", {"lane"}}},
      {"offload_tasks_completed_total", {"counter", {"lane", "outcome"}}},
      {"offload_task_retries_total", {"counter", {"lane"}}},
      {"offload_tasks_queued", {"gauge", {"lane"}}},
      {"offload_tasks_scheduled", {"gauge", {"lane"}}},
      {"offload_tasks_running", {"gauge", {"lane"}}},
      {"offload_task_wait_seconds", {"histogram", {"lane"}}},
      {"offload_task_run_seconds", {"histogram", {"lane"}}},
      {"offload_worker_heartbeat_age_seconds", {"gauge", {"worker"}}},
      {"offload_dead_letters", {"gauge", {}}},
  };
  return table;
}

struct sample {
  std::string name;
  std::string declared_under;  // the family of the last TYPE line before it
  std::map<std::string, std::string> labels;
  std::string value;
};

struct exposition {
  std::map<std::string, std::string> types;  // family → type, from # TYPE
  std::map<std::string, std::string> help;   // family → help text
  std::vector<sample> samples;
  std::vector<std::string> order;  // families in order of their TYPE lines
};

/// A strict reader of the subset of the text format that to_prometheus() writes.
exposition parse(const std::string& text) {
  exposition e;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty())
      throw std::runtime_error("empty line in exposition");
    if (line.rfind("# HELP ", 0) == 0) {
      const std::string rest = line.substr(7);
      const auto sp = rest.find(' ');
      if (sp == std::string::npos)
        throw std::runtime_error("HELP without text: " + line);
      e.help[rest.substr(0, sp)] = rest.substr(sp + 1);
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      const std::string rest = line.substr(7);
      const auto sp = rest.find(' ');
      const std::string name = rest.substr(0, sp);
      if (e.types.count(name) != 0)
        throw std::runtime_error("second TYPE line for " + name);
      e.types[name] = rest.substr(sp + 1);
      e.order.push_back(name);
      continue;
    }
    if (line[0] == '#')
      throw std::runtime_error("unexpected comment: " + line);
    sample s;
    s.declared_under = e.order.empty() ? std::string() : e.order.back();
    const auto brace = line.find('{');
    const auto space = line.rfind(' ');
    if (space == std::string::npos)
      throw std::runtime_error("sample without value: " + line);
    s.value = line.substr(space + 1);
    if (brace != std::string::npos && brace < space) {
      s.name = line.substr(0, brace);
      const auto close = line.rfind('}');
      if (close == std::string::npos || close + 1 != space)
        throw std::runtime_error("malformed labels: " + line);
      std::string labels = line.substr(brace + 1, close - brace - 1);
      std::size_t pos = 0;
      while (pos < labels.size()) {
        const auto eq = labels.find("=\"", pos);
        const auto end = labels.find('"', eq + 2);
        if (eq == std::string::npos || end == std::string::npos)
          throw std::runtime_error("malformed label in: " + line);
        const std::string key = labels.substr(pos, eq - pos);
        if (!s.labels.emplace(key, labels.substr(eq + 2, end - eq - 2)).second)
          throw std::runtime_error("repeated label " + key + " in: " + line);
        pos = end + 1;
        if (pos < labels.size()) {
          if (labels[pos] != ',')
            throw std::runtime_error("malformed label list in: " + line);
          ++pos;
        }
      }
    } else {
      s.name = line.substr(0, space);
    }
    e.samples.push_back(std::move(s));
  }
  return e;
}

/// The family a sample belongs to: its name, or for histograms the name without the suffix.
std::string family_of(const exposition& e, const std::string& name) {
  for (std::string_view suffix : {"_bucket", "_sum", "_count"}) {
    if (name.size() > suffix.size() && name.ends_with(suffix)) {
      const std::string base = name.substr(0, name.size() - suffix.size());
      auto it = e.types.find(base);
      if (it != e.types.end() && it->second == "histogram")
        return base;
    }
  }
  return name;
}

/// An executor with some history: every lane used, outcomes of every kind but expired.
offload::metrics_snapshot busy_snapshot(offload::executor& ex) {
  offload_test::gate g;
  std::atomic<bool> started{false};
  ex.post(offload::task_options{.lane = lane::critical}, [&] {
    started.store(true);
    g.wait();
  });
  offload_test::eventually([&] {
    return started.load();
  });
  auto cancelled = ex.submit(offload::task_options{.lane = lane::low}, [] {
    return 0;
  });
  cancelled.cancel();
  for (int i = 0; i < 50; ++i) {
    const lane l = offload_test::k_lanes[static_cast<std::size_t>(i) % 4];
    ex.post(offload::task_options{.lane = l}, [i] {
      if (i % 10 == 0)
        throw std::runtime_error("failed");
    });
  }
  g.open();
  ex.wait_idle();
  return ex.metrics();
}

void expect_exposition_matches(const offload::metrics_snapshot& m) {
  const std::string text = offload::to_prometheus(m);
  ASSERT_FALSE(text.empty());
  ASSERT_EQ(text.back(), '\n');
  exposition e;
  ASSERT_NO_THROW(e = parse(text)) << text;

  // Exactly the names of the table, each with its type and a help text.
  std::map<std::string, std::string> expected_types;
  for (const auto& [name, spec] : expected_families()) expected_types[name] = spec.type;
  EXPECT_EQ(e.types, expected_types);
  for (const auto& [name, type] : e.types) {
    EXPECT_FALSE(e.help[name].empty()) << name;
  }

  // Every sample belongs to a declared family, after its TYPE line, with the table's labels.
  std::set<std::string> seen_families;
  std::string current;
  std::map<std::string, std::set<std::string>> lanes_of;
  std::set<std::pair<std::string, std::string>> completed_keys;
  std::set<std::string> workers;
  for (const sample& s : e.samples) {
    const std::string family = family_of(e, s.name);
    ASSERT_TRUE(expected_families().count(family)) << "unexpected metric " << s.name;
    EXPECT_EQ(s.declared_under, family) << s.name << " is not under its own TYPE line";
    if (family != current) {
      EXPECT_FALSE(seen_families.count(family)) << family << " samples are not contiguous";
      seen_families.insert(family);
      current = family;
    }
    std::set<std::string> keys;
    for (const auto& [k, v] : s.labels) {
      if (!(k == "le" && s.name.ends_with("_bucket")))
        keys.insert(k);
    }
    EXPECT_EQ(keys, expected_families().at(family).labels) << s.name;
    if (s.name.ends_with("_bucket")) {
      EXPECT_TRUE(s.labels.count("le")) << s.name;
    }
    if (s.labels.count("lane"))
      lanes_of[s.name].insert(s.labels.at("lane"));
    if (family == "offload_tasks_completed_total")
      completed_keys.emplace(s.labels.at("lane"), s.labels.at("outcome"));
    if (family == "offload_worker_heartbeat_age_seconds")
      workers.insert(s.labels.at("worker"));
  }
  EXPECT_EQ(seen_families.size() + (m.workers.empty() ? 1 : 0), expected_families().size());

  const std::set<std::string> all_lanes{"critical", "high", "normal", "low"};
  for (const auto& [name, lanes] : lanes_of) EXPECT_EQ(lanes, all_lanes) << name;
  EXPECT_EQ(completed_keys.size(), 16u);
  for (const auto& l : all_lanes) {
    for (const char* o : {"succeeded", "failed", "cancelled", "expired"})
      EXPECT_TRUE(completed_keys.count({l, o})) << l << "/" << o;
  }
  std::set<std::string> expected_workers;
  for (const auto& w : m.workers) expected_workers.insert(std::to_string(w.index));
  EXPECT_EQ(workers, expected_workers);

  // Values equal the snapshot.
  auto value = [&](const std::string& name, const std::map<std::string, std::string>& labels) {
    for (const sample& s : e.samples) {
      if (s.name == name && s.labels == labels)
        return s.value;
    }
    ADD_FAILURE() << "no sample " << name;
    return std::string();
  };
  for (lane l : offload_test::k_lanes) {
    const std::string ln(offload::to_string(l));
    const auto& s = m.of(l);
    EXPECT_EQ(value("offload_tasks_submitted_total", {{"lane", ln}}), std::to_string(s.submitted));
    EXPECT_EQ(value("offload_tasks_rejected_total", {{"lane", ln}}), std::to_string(s.rejected));
    EXPECT_EQ(value("offload_task_retries_total", {{"lane", ln}}), std::to_string(s.retries));
    EXPECT_EQ(value("offload_tasks_queued", {{"lane", ln}}), std::to_string(s.queued));
    EXPECT_EQ(value("offload_tasks_scheduled", {{"lane", ln}}), std::to_string(s.scheduled));
    EXPECT_EQ(value("offload_tasks_running", {{"lane", ln}}), std::to_string(s.running));
    for (std::size_t o = 0; o < offload::k_outcome_count; ++o) {
      const std::string on(offload::to_string(static_cast<offload::task_outcome>(o)));
      EXPECT_EQ(value("offload_tasks_completed_total", {{"lane", ln}, {"outcome", on}}),
                std::to_string(s.completed[o]));
    }
    // Histograms: cumulative buckets with increasing bounds, ending at +Inf == _count.
    for (const auto& [name, h] : {std::pair{std::string("offload_task_wait_seconds"), &s.wait},
                                  std::pair{std::string("offload_task_run_seconds"), &s.run}}) {
      std::vector<std::pair<double, std::uint64_t>> buckets;
      for (const sample& smp : e.samples) {
        if (smp.name == name + "_bucket" && smp.labels.at("lane") == ln) {
          const std::string& le = smp.labels.at("le");
          buckets.emplace_back(
              le == "+Inf" ? std::numeric_limits<double>::infinity() : std::stod(le),
              std::stoull(smp.value));
        }
      }
      ASSERT_EQ(buckets.size(), offload::histogram_snapshot::bucket_count) << name;
      std::uint64_t cumulative = 0;
      for (std::size_t i = 0; i < buckets.size(); ++i) {
        cumulative += h->buckets[i];
        EXPECT_EQ(buckets[i].second, cumulative) << name << " " << ln << " bucket " << i;
        EXPECT_DOUBLE_EQ(buckets[i].first, offload::histogram_snapshot::upper_bound_seconds(i));
        if (i > 0) {
          EXPECT_LT(buckets[i - 1].first, buckets[i].first);
        }
      }
      EXPECT_EQ(buckets.back().first, std::numeric_limits<double>::infinity());
      EXPECT_EQ(value(name + "_count", {{"lane", ln}}), std::to_string(h->count));
      EXPECT_EQ(buckets.back().second, h->count);
      EXPECT_DOUBLE_EQ(std::stod(value(name + "_sum", {{"lane", ln}})), h->sum_seconds);
    }
  }
  for (const auto& w : m.workers) {
    EXPECT_DOUBLE_EQ(std::stod(value("offload_worker_heartbeat_age_seconds",
                                     {{"worker", std::to_string(w.index)}})),
                     w.heartbeat_age_seconds);
  }
  EXPECT_EQ(value("offload_dead_letters", {}), std::to_string(m.dead_letters));
}

TEST(Prometheus, ExpositionHasExactlyTheDesignedNamesTypesAndLabels) {
  {
    offload::executor ex{{.workers = 2, .timing_sample_interval = 1}};
    SCOPED_TRACE("idle executor");
    expect_exposition_matches(ex.metrics());
  }
  {
    offload::executor ex{{.workers = 2, .timing_sample_interval = 1}};
    SCOPED_TRACE("executor with history");
    const offload::metrics_snapshot m = busy_snapshot(ex);
    ASSERT_GT(m.of(lane::normal).run.count, 0u);
    ASSERT_GT(m.of(lane::low).completed_of(offload::task_outcome::cancelled), 0u);
    expect_exposition_matches(m);
  }
  {
    SCOPED_TRACE("synthetic snapshot with large values");
    offload::metrics_snapshot m;
    for (std::size_t l = 0; l < offload::k_lane_count; ++l) {
      auto& s = m.lanes[l];
      s.submitted = std::numeric_limits<std::uint64_t>::max();
      s.rejected = 12345678901234567ull;
      s.completed = {1, 2, 3, 4};
      s.queued = 7;
      s.run.buckets[3] = 5;
      s.run.buckets.back() = 1;
      s.run.count = 6;
      s.run.sum_seconds = 123456.789;
      s.wait.buckets[0] = 2;
      s.wait.count = 2;
      s.wait.sum_seconds = 1.5e-7;
    }
    m.workers.push_back({.index = 0, .heartbeat_age_seconds = 0.25});
    m.workers.push_back({.index = 1, .heartbeat_age_seconds = 3600.5});
    m.dead_letters = 3;
    expect_exposition_matches(m);
  }
}

struct promtool_result {
  int exit_code = -1;
  std::string output;
};

/// Runs `promtool check metrics` on `text` (on its standard input), with stdout and stderr.
promtool_result promtool_check(const std::string& promtool, const std::string& text) {
  const std::string path =
      ::testing::TempDir() + "offload_metrics_" + std::to_string(::getpid()) + "_" +
      std::to_string(std::hash<std::thread::id>{}(std::this_thread::get_id())) + ".prom";
  {
    std::ofstream out(path, std::ios::binary);
    out << text;
  }
  const std::string command = "'" + promtool + "' check metrics < '" + path + "' 2>&1";
  promtool_result r;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) {
    r.output = "popen failed";
    return r;
  }
  std::array<char, 4096> buf{};
  std::size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) r.output.append(buf.data(), n);
  const int status = ::pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::remove(path.c_str());
  return r;
}

// `promtool check metrics` accepts the exposition with no lint problem: for an idle executor,
// one with history (every outcome, every lane, non-empty histograms, a busy worker's heartbeat)
// and a synthetic snapshot with extreme values.
TEST(Prometheus, PromtoolCheckMetricsPasses) {
  const std::string promtool = OFFLOAD_PROMTOOL_PATH;
  if (promtool.empty() || ::access(promtool.c_str(), X_OK) != 0) {
    FAIL() << "promtool not found (looked for '" << promtool
           << "'): install the Debian package `prometheus` (apt-get install prometheus), then "
              "reconfigure so that CMake's find_program(promtool) finds it";
  }
  std::vector<std::pair<std::string, std::string>> cases;
  {
    offload::executor ex{{.workers = 2, .timing_sample_interval = 1}};
    cases.emplace_back("idle", offload::to_prometheus(ex.metrics()));
    cases.emplace_back("with history", offload::to_prometheus(busy_snapshot(ex)));
    // A worker seen inside one task by two snapshots has a non-zero heartbeat age.
    offload_test::gate g;
    std::atomic<bool> started{false};
    ex.post([&] {
      started.store(true);
      g.wait();
    });
    offload_test::eventually([&] {
      return started.load();
    });
    (void)ex.metrics();
    std::this_thread::sleep_for(2ms);
    const offload::metrics_snapshot m = ex.metrics();
    g.open();
    ex.wait_idle();  // the task reads `g`
    bool some_age = false;
    for (const auto& w : m.workers) some_age = some_age || w.heartbeat_age_seconds > 0;
    EXPECT_TRUE(some_age);
    cases.emplace_back("busy worker", offload::to_prometheus(m));
  }
  {
    offload::metrics_snapshot m;
    m.lanes[0].submitted = std::numeric_limits<std::uint64_t>::max();
    m.lanes[1].run.buckets.back() = 1;
    m.lanes[1].run.count = 1;
    m.lanes[1].run.sum_seconds = 1e6;
    m.lanes[2].wait.buckets[0] = 1;
    m.lanes[2].wait.count = 1;
    m.lanes[2].wait.sum_seconds = 1e-9;
    m.workers.push_back({.index = 0, .heartbeat_age_seconds = 1e-7});
    cases.emplace_back("synthetic", offload::to_prometheus(m));
  }
  for (const auto& [what, text] : cases) {
    const promtool_result r = promtool_check(promtool, text);
    EXPECT_EQ(r.exit_code, 0) << what << ": promtool check metrics failed:\n"
                              << r.output << "\n--- exposition ---\n"
                              << text.substr(0, 4000);
    EXPECT_EQ(r.output, "") << what << ": promtool printed problems";
  }
}

// promtool itself works here: a deliberately broken exposition is refused (guards against a
// check that passes vacuously).
TEST(Prometheus, PromtoolRejectsABrokenExposition) {
  const std::string promtool = OFFLOAD_PROMTOOL_PATH;
  if (promtool.empty() || ::access(promtool.c_str(), X_OK) != 0) {
    FAIL() << "promtool not found: install the Debian package `prometheus` (apt-get install "
              "prometheus), then reconfigure";
  }
  const promtool_result r = promtool_check(
      promtool, "# HELP x_total A counter.\n# TYPE x_total counter\nx_total{lane=\"a\" 1\n");
  EXPECT_NE(r.exit_code, 0) << r.output;
}

}  // namespace
