// The Celery codecs against messages and documents captured from Celery 5.2.6 / kombu 5.2.4
// (tests/broker/celery/, see FIXTURES.md): decoded field by field, re-encoded byte for byte.
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <offload/broker/celery/base64.hpp>
#include <offload/broker/celery/iso8601.hpp>
#include <offload/broker/celery/python_json.hpp>
#include <offload/broker/celery/result_document.hpp>
#include <offload/broker/celery/task_message.hpp>

namespace {

namespace fs = std::filesystem;
using namespace offload::broker::celery;

const fs::path k_fixtures = fs::path(OFFLOAD_CELERY_FIXTURES);

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  EXPECT_TRUE(in) << "cannot open " << p;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}
json read_json(const fs::path& p) {
  return json::parse(read_text(p));
}

std::vector<fs::path> files_in(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".json")
      out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

/// Equal as JSON values, whatever the order of their members (the index is written sorted).
bool same(const json& a, const json& b) {
  return nlohmann::json::parse(a.dump()) == nlohmann::json::parse(b.dump());
}

/// The message `text` must be refused with a reason containing `reason`.
void expect_malformed(const std::string& text, const std::string& reason) {
  try {
    (void)decode_redis_envelope(text);
    ADD_FAILURE() << "accepted: " << text;
  } catch (const malformed_message& e) {
    EXPECT_NE(std::string(e.what()).find(reason), std::string::npos)
        << "reason '" << e.what() << "' does not mention '" << reason << "'";
  }
}

json fixture_headers() {
  return read_json(k_fixtures / "redis/task-messages/send_task_args.json")["headers"];
}
std::string envelope_with(const json& headers, const std::string& body, bool base64 = true) {
  json env = json::object();
  env["body"] = base64 ? base64_encode(body) : body;
  env["content-encoding"] = "utf-8";
  env["content-type"] = "application/json";
  env["headers"] = headers;
  json props = {{"delivery_tag", "t1"}};
  if (base64)
    props["body_encoding"] = "base64";
  env["properties"] = props;
  return dumps(env);
}
const std::string k_good_body =
    R"([[2, 3], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}])";

TEST(CeleryRedisMessages, EveryCapturedMessageDecodesToWhatCelerySent) {
  const json index = read_json(k_fixtures / "redis/task-messages.index.json");
  int checked = 0;
  for (const auto& path : files_in(k_fixtures / "redis/task-messages")) {
    SCOPED_TRACE(path.filename().string());
    const task_message m = decode_redis_envelope(read_text(path));
    if (!index.contains(path.filename().string()))
      continue;  // the worker's retry copies, captured apart
    const json& expected = index.at(path.filename().string());
    EXPECT_EQ(m.id, expected.at("task_id").get<std::string>());
    EXPECT_EQ(m.protocol, expected.at("protocol").get<int>());
    const json& body = expected.at("body_decoded");
    if (m.protocol == 2) {
      EXPECT_TRUE(same(m.args, body[0]));
      EXPECT_TRUE(same(m.kwargs, body[1]));
      EXPECT_TRUE(same(m.callbacks, body[2]["callbacks"]));
      EXPECT_TRUE(same(m.errbacks, body[2]["errbacks"]));
      EXPECT_TRUE(same(m.chain, body[2]["chain"])) << m.chain.dump();
      EXPECT_TRUE(same(m.chord, body[2]["chord"])) << m.chord.dump();
    } else {
      EXPECT_TRUE(same(m.args, body["args"]));
      EXPECT_TRUE(same(m.kwargs, body["kwargs"]));
      EXPECT_EQ(m.task, body["task"].get<std::string>());
    }
    EXPECT_FALSE(m.delivery_tag.empty());
    // The list it was found in is the one a C++ producer would push it to.
    EXPECT_EQ(redis_priority_list(m.routing_key, m.priority),
              expected.at("redis_list").get<std::string>());
    ++checked;
  }
  EXPECT_EQ(checked, 23);
}

TEST(CeleryRedisMessages, ProtocolTwoMessagesReencodeByteForByte) {
  int checked = 0;
  for (const auto& path : files_in(k_fixtures / "redis/task-messages")) {
    SCOPED_TRACE(path.filename().string());
    const std::string text = read_text(path);
    const task_message m = decode_redis_envelope(text);
    if (m.protocol != 2)
      continue;
    EXPECT_EQ(encode_redis_envelope(m), text);
    ++checked;
  }
  EXPECT_EQ(checked, 23);
}

TEST(CeleryRedisMessages, HeadersAreReadWithTheirTypes) {
  const auto m = decode_redis_envelope(
      read_text(k_fixtures / "redis/task-messages/time_limits_shadow_ignore_headers.json"));
  EXPECT_EQ(m.task, "tasks.add");
  EXPECT_EQ(m.shadow, "shadow-name");
  // Celery 5.2.6 sends [hard, soft]: time_limit=30, soft_time_limit=20.
  EXPECT_EQ(m.time_limit_hard, 30.0);
  EXPECT_EQ(m.time_limit_soft, 20.0);
  EXPECT_TRUE(m.ignore_result);
  EXPECT_EQ(m.extra_headers.at("x-custom"), "v");
  EXPECT_EQ(m.argsrepr, "(1, 7)");

  const auto retry =
      decode_redis_envelope(read_text(k_fixtures / "redis/task-messages/retry_republished_1.json"));
  EXPECT_EQ(retry.retries, 1);
  EXPECT_EQ(retry.parent_id, retry.id);
  ASSERT_TRUE(retry.eta.has_value());
  EXPECT_NO_THROW((void)parse_iso8601(*retry.eta));

  const auto p9 =
      decode_redis_envelope(read_text(k_fixtures / "redis/task-messages/priority_9.json"));
  EXPECT_EQ(p9.priority, 9);
  const auto exp =
      decode_redis_envelope(read_text(k_fixtures / "redis/task-messages/expires_120s.json"));
  EXPECT_EQ(exp.expiration, "120000");
  EXPECT_TRUE(exp.expires.has_value());
}

// The path of a C++ producer: the fields set by hand give Celery's bytes.
TEST(CeleryRedisMessages, AMessageBuiltInCppIsWhatCeleryWouldSend) {
  const std::string captured = read_text(k_fixtures / "redis/task-messages/send_task_kwargs.json");
  task_message m;
  m.task = "tasks.echo";
  m.id = "7f88f8f2-8fdd-4e8e-9525-cf1d4eb398fc";
  m.args = json::array({"x"});
  m.kwargs = json::object();
  m.kwargs["a"] = 1;
  m.kwargs["b"] = json::array({1, 2});
  m.kwargs["s"] = "\xc3\xa9";  // é
  m.argsrepr = "['x']";
  m.kwargsrepr = "{'a': 1, 'b': [1, 2], 's': '\xc3\xa9'}";
  m.origin = "gen30882@vm";
  m.reply_to = "d4772551-1034-3ec3-8a2a-189fd8382f53";
  m.delivery_tag = "8f516c6e-9163-4f7d-84cc-7d0b5d70653d";
  m.routing_key = "celery";
  EXPECT_EQ(encode_redis_envelope(m), captured);
}

TEST(CeleryRedisMessages, HandBuiltMessagesThePythonWorkerRanAreAccepted) {
  for (const char* name : {"full_headers.json",
                           "minimal_headers_task_id_only.json",
                           "plain_json_body_no_body_encoding.json",
                           "eta_in_2s_utc.json",
                           "expired_already.json",
                           "kwargs_only.json",
                           "unknown_task.json"}) {
    SCOPED_TRACE(name);
    EXPECT_NO_THROW((void)decode_redis_envelope(read_text(k_fixtures / "redis/handmade" / name)));
  }
}

// Two shapes that kill Celery 5.2.6's own worker are refused with a reason, and the id kept.
TEST(CeleryMalformed, ABodyWithoutEmbedIsRefusedNamingTheCount) {
  const std::string text = read_text(k_fixtures / "redis/handmade/body_without_embed.json");
  try {
    (void)decode_redis_envelope(text);
    FAIL() << "accepted";
  } catch (const malformed_message& e) {
    EXPECT_STREQ(e.what(), "body has 2 elements, expected 3 ([args, kwargs, embed])");
    EXPECT_EQ(e.task_id(), "85f98c9f-8a7a-4434-8c21-ef2a78f0d36e");
  }
}

TEST(CeleryMalformed, AnAmqpMessageWithoutContentTypeIsRefused) {
  const json file = read_json(k_fixtures / "amqp/handmade/no_content_type.json");
  amqp_delivery d;
  d.headers = file["headers"];
  d.correlation_id = file["properties"]["correlation_id"].get<std::string>();
  try {
    (void)decode_amqp(d, file["body"].get<std::string>());
    FAIL() << "accepted";
  } catch (const malformed_message& e) {
    EXPECT_NE(std::string(e.what()).find("content_type is missing"), std::string::npos);
    EXPECT_EQ(e.task_id(), "78486bf8-d245-442e-9e35-bb1c784fb5b1");
  }
}

TEST(CeleryMalformed, EachDefectIsNamed) {
  json h = fixture_headers();
  expect_malformed("{not json", "envelope is not JSON");
  expect_malformed("[1, 2]", "envelope must be an object");
  expect_malformed(R"({"body": "e30=", "headers": {}})", "'content-type' is missing");
  expect_malformed(envelope_with(h, k_good_body).replace(10, 1, "!"), "invalid byte at offset");
  expect_malformed(envelope_with(h, "[[2, 3], {}, {}"), "body is not JSON");
  expect_malformed(envelope_with(h, R"({"args": []})"), "body must be [args, kwargs, embed]");
  expect_malformed(envelope_with(h, R"([{}, {}, {}])"), "args must be a list");
  expect_malformed(envelope_with(h, R"([[], [], {}])"), "kwargs must be an object");
  expect_malformed(envelope_with(h, R"([[], {}, 3])"), "embed must be an object or null");
  expect_malformed(envelope_with(json::object(), k_good_body), "no task name");
  {
    json bad = h;
    bad["retries"] = "one";
    expect_malformed(envelope_with(bad, k_good_body), "header 'retries' must be an integer");
  }
  {
    json bad = h;
    bad["id"] = "";
    expect_malformed(envelope_with(bad, k_good_body), "header 'id' is missing or empty");
  }
  {
    json bad = h;
    bad["timelimit"] = json::array({1});
    expect_malformed(envelope_with(bad, k_good_body), "'timelimit' must be [hard, soft]");
  }
  {
    json bad = h;
    bad["eta"] = "tomorrow";
    expect_malformed(envelope_with(bad, k_good_body), "header 'eta': time 'tomorrow'");
  }
  {
    json bad = h;
    bad["task"] = 7;
    expect_malformed(envelope_with(bad, k_good_body), "header 'task' must be a string");
  }
  // Invalid UTF-8 in a string.
  expect_malformed(envelope_with(h, "[[\"\xff\"], {}, {}]"), "body is not JSON");
  // Not application/json.
  {
    json env = json::parse(envelope_with(h, k_good_body));
    env["content-type"] = "application/x-python-serialize";
    expect_malformed(dumps(env), "is not supported (only application/json)");
  }
  // Larger than the limit: refused before parsing.
  const std::string big = envelope_with(h, k_good_body);
  try {
    (void)decode_redis_envelope(big, decode_limits{.max_bytes = 100});
    ADD_FAILURE() << "accepted";
  } catch (const malformed_message& e) {
    EXPECT_NE(std::string(e.what()).find("exceeds the limit of 100"), std::string::npos);
  }
}

TEST(CeleryAmqpMessages, EveryCapturedMessageDecodes) {
  int checked = 0;
  for (const auto& path : files_in(k_fixtures / "amqp/task-messages")) {
    SCOPED_TRACE(path.filename().string());
    const json f = read_json(path);
    const json& p = f["properties"];
    amqp_delivery d;
    d.content_type = p["content_type"].get<std::string>();
    d.content_encoding = p["content_encoding"].get<std::string>();
    // basic_get captures name the table application_headers, the firehose's headers.
    d.headers = p.contains("application_headers") ? p["application_headers"] : p["headers"];
    d.correlation_id = p["correlation_id"].get<std::string>();
    if (p.contains("reply_to"))
      d.reply_to = p["reply_to"].get<std::string>();
    d.priority = p.value("priority", 0);
    d.exchange = f["delivery_info"]["exchange"].get<std::string>();
    d.routing_key = f["delivery_info"]["routing_key"].get<std::string>();
    const std::string body = f["body"].get<std::string>();
    const task_message m = decode_amqp(d, body);
    EXPECT_EQ(m.task, d.headers["task"].get<std::string>());
    EXPECT_EQ(m.id, d.headers["id"].get<std::string>());
    const json parsed = json::parse(body);
    EXPECT_EQ(m.args, parsed[0]);
    EXPECT_EQ(m.kwargs, parsed[1]);
    // The body Celery sent is the body a C++ producer writes.
    EXPECT_EQ(encode_body(m), body);
    ++checked;
  }
  EXPECT_EQ(checked, 20);
}

TEST(CeleryResults, WorkerDocumentsAreWrittenByteForByte) {
  const auto dir = k_fixtures / "redis/result-backend";
  const auto fixture = [&](const char* name) {
    return read_text(dir / name);
  };
  EXPECT_EQ(encode_redis_result(result_document::success(
                "e0701aaa-2ad0-47c3-bce0-af89ad6fcbcb", 42, "2026-12-02T05:42:50.034467")),
            fixture("success_int.json"));
  EXPECT_EQ(encode_redis_result(result_document::failure(
                "f0587ebf-11d7-4087-bd48-f681d36e2b6a",
                remote_exception{
                    "NotRegistered", json::array({"tasks.does_not_exist"}), "celery.exceptions"},
                std::nullopt,
                "2026-12-02T05:42:52.082362")),
            fixture("unknown_task.json"));
  EXPECT_EQ(encode_redis_result(result_document::revoked(
                "b5fcfe59-35e9-48ad-b404-ee727d6b76be", "revoked", "2026-12-02T05:43:26.101848")),
            fixture("revoked_countdown.json"));
  const json failure = read_json(dir / "failure_valueerror.json");
  EXPECT_EQ(encode_redis_result(result_document::failure(
                "5411f1c6-7bda-4766-8f38-48ecd5fa6bbc",
                remote_exception{"ValueError", json::array({"boom"}), "builtins"},
                failure["traceback"].get<std::string>(),
                "2026-12-02T05:42:50.047915")),
            fixture("failure_valueerror.json"));
}

TEST(CeleryResults, EveryCapturedDocumentDecodesAndReencodes) {
  int checked = 0;
  for (const auto& path : files_in(k_fixtures / "redis/result-backend")) {
    const std::string name = path.filename().string();
    if (name.find("chord-bookkeeping") != std::string::npos ||
        name.find("pubsub") != std::string::npos)
      continue;
    SCOPED_TRACE(name);
    const std::string text = read_text(path);
    const json raw = json::parse(text);
    const result_document d = decode_result(text);
    EXPECT_EQ(d.task_id, raw["task_id"].get<std::string>());
    EXPECT_EQ(to_string(d.status), raw["status"].get<std::string>());
    // The result_extended documents carry fields offload does not write; the rest round-trip.
    if (!raw.contains("name")) {
      EXPECT_EQ(encode_redis_result(d), text);
    }
    ++checked;
  }
  EXPECT_GE(checked, 17);
}

TEST(CeleryResults, RpcRepliesReencodeByteForByte) {
  int checked = 0;
  for (const auto& path : files_in(k_fixtures / "amqp/rpc-results")) {
    SCOPED_TRACE(path.filename().string());
    const std::string body = read_json(path)["body"].get<std::string>();
    EXPECT_EQ(encode_rpc_result(decode_result(body)), body);
    ++checked;
  }
  EXPECT_GE(checked, 5);
}

TEST(CeleryResults, DocumentsThePythonClientWouldMisreadAreRefused) {
  EXPECT_THROW((void)decode_result(R"({"status": "SUCCESS", "result": 3})"), std::invalid_argument);
  EXPECT_THROW((void)decode_result(R"({"status": "success", "result": 3, "task_id": "x"})"),
               std::invalid_argument);
  EXPECT_THROW((void)decode_result(R"({"status": "FAILURE", "result": "boom", "task_id": "x"})"),
               std::invalid_argument);
  EXPECT_THROW((void)decode_result(R"({"status": "FAILURE", "result": null, "task_id": "x"})"),
               std::invalid_argument);
  const auto d = decode_result(
      R"({"status": "FAILURE", "result": {"exc_type": "ValueError", "exc_message": "x"}, "task_id": "t"})");
  const auto e = remote_exception::from_json(d.result);
  EXPECT_EQ(e.type, "ValueError");
  EXPECT_EQ(e.text(), "x");
  EXPECT_FALSE(e.module.has_value());
  EXPECT_TRUE(is_ready(d.status));
}

TEST(PythonJson, WritesWhatJsonDumpsWrites) {
  EXPECT_EQ(dumps(json::parse(R"({"a":[1,2.5,null,true],"b":{}})")),
            R"({"a": [1, 2.5, null, true], "b": {}})");
  EXPECT_EQ(dumps(json("\xc3\xa9")), R"("\u00e9")");
  EXPECT_EQ(dumps(json("\xf0\x9f\x98\x80")), R"("\ud83d\ude00")");  // U+1F600: a surrogate pair
  EXPECT_EQ(dumps(json("\x7f\t\"\\")), R"("\u007f\t\"\\")");
  EXPECT_EQ(dumps(json(0.1)), "0.1");
  EXPECT_EQ(dumps(json(1e-05)), "1e-05");
  EXPECT_EQ(dumps(json(1.0)), "1.0");
  EXPECT_EQ(dumps(json::array()), "[]");
  // Keys are escaped as values are; plain ASCII is written as it is.
  EXPECT_EQ(dumps(json::parse(R"({"a\"b": "x y~", "\u00e9": "\n"})")),
            R"({"a\"b": "x y~", "\u00e9": "\n"})");
  EXPECT_EQ(dumps(json(std::string("a\0b", 3))), R"("a\u0000b")");
}

TEST(Iso8601, ReadsThePythonFormsAndWritesIsoformat) {
  const auto t = parse_iso8601("2026-12-02T05:42:04.677820+00:00");
  EXPECT_EQ(format_iso8601_utc(t), "2026-12-02T05:42:04.677820+00:00");
  EXPECT_EQ(format_iso8601_naive(t), "2026-12-02T05:42:04.677820");
  EXPECT_EQ(parse_iso8601("2026-12-02T05:42:04.677820Z"), t);
  EXPECT_EQ(parse_iso8601("2026-12-02T05:42:04.677820"), t);  // naive: UTC
  EXPECT_EQ(parse_iso8601("2026-12-02T07:12:04.677820+01:30"), t);
  EXPECT_EQ(parse_iso8601("2026-12-01T23:42:04.677820-06:00"), t);
  EXPECT_EQ(format_iso8601_utc(parse_iso8601("2026-12-02T05:42:04+00:00")),
            "2026-12-02T05:42:04+00:00");  // isoformat() drops a zero fraction
  EXPECT_EQ(format_iso8601_utc(parse_iso8601("2024-02-29T00:00:00.5")),
            "2024-02-29T00:00:00.500000+00:00");
  for (const char* bad : {"",
                          "2026-12-02",
                          "2026-13-02T00:00:00",
                          "2026-02-30T00:00:00",
                          "2026-12-02T24:00:00",
                          "2026-12-02T05:42:04+0000",
                          "2026-12-02T05:42:04.",
                          "2026-12-02T05:42:04 extra"}) {
    SCOPED_TRACE(bad);
    EXPECT_THROW((void)parse_iso8601(bad), std::invalid_argument);
  }
}

TEST(Base64, RoundTripsEveryLengthAndRefusesWhatIsNotBase64) {
  std::mt19937 rng(7);
  for (std::size_t n = 0; n < 70; ++n) {
    std::string bytes(n, '\0');
    for (auto& c : bytes) c = static_cast<char>(rng());
    EXPECT_EQ(base64_decode(base64_encode(bytes)), bytes) << n;
  }
  EXPECT_EQ(base64_encode("Man"), "TWFu");
  EXPECT_EQ(base64_encode("Ma"), "TWE=");
  EXPECT_EQ(base64_encode("M"), "TQ==");
  EXPECT_THROW((void)base64_decode("TWF"), std::invalid_argument);
  EXPECT_THROW((void)base64_decode("TW=u"), std::invalid_argument);
  EXPECT_THROW((void)base64_decode("TQ==TQ=="), std::invalid_argument);
  EXPECT_THROW((void)base64_decode("T*Fu"), std::invalid_argument);
}

TEST(RedisPriorities, FourBucketsLowestFirst) {
  EXPECT_EQ(redis_priority_list("celery", 0), "celery");
  EXPECT_EQ(redis_priority_list("celery", 2), "celery");
  EXPECT_EQ(redis_priority_list("celery", 3), std::string("celery\x06\x16") + "3");
  EXPECT_EQ(redis_priority_list("celery", 8), std::string("celery\x06\x16") + "6");
  EXPECT_EQ(redis_priority_list("q", 9), std::string("q\x06\x16") + "9");
}

}  // namespace
