#include <offload/broker/celery/base64.hpp>
#include <offload/broker/celery/iso8601.hpp>
#include <offload/broker/celery/task_message.hpp>

namespace offload::broker::celery {
namespace {

const char* type_name(const json& v) {
  return v.type_name();
}

/// Reads fields of one JSON object (headers, properties or a protocol-1 body) and throws
/// malformed_message naming `where` and the key.
struct fields {
  const json& object;
  const char* where;
  const std::string& task_id;

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw malformed_message(std::string(where) + " '" + key + "' " + what, task_id);
  }
  const json* find(const std::string& key) const {
    const auto it = object.find(key);
    return it == object.end() || it->is_null() ? nullptr : &*it;
  }
  std::optional<std::string> text(const std::string& key) const {
    const json* v = find(key);
    if (v == nullptr)
      return std::nullopt;
    if (!v->is_string())
      fail(key, std::string("must be a string or null, not ") + type_name(*v));
    return v->get<std::string>();
  }
  std::optional<std::int64_t> integer(const std::string& key) const {
    const json* v = find(key);
    if (v == nullptr)
      return std::nullopt;
    if (!v->is_number_integer())
      fail(key, std::string("must be an integer or null, not ") + type_name(*v));
    return v->get<std::int64_t>();
  }
  bool boolean(const std::string& key) const {
    const json* v = find(key);
    if (v == nullptr)
      return false;
    if (!v->is_boolean())
      fail(key, std::string("must be true, false or null, not ") + type_name(*v));
    return v->get<bool>();
  }
  std::optional<double> seconds(const json& v, const std::string& key) const {
    if (v.is_null())
      return std::nullopt;
    if (!v.is_number())
      fail(key, std::string("must hold numbers or nulls, not ") + type_name(v));
    const double s = v.get<double>();
    if (!(s >= 0))
      fail(key, "must hold non-negative numbers");
    return s;
  }
  json signatures(const std::string& key) const {
    const json* v = find(key);
    if (v == nullptr)
      return nullptr;
    if (!v->is_array() && !v->is_object())
      fail(key, std::string("must be a list, a signature or null, not ") + type_name(*v));
    return *v;
  }
};

json parse(std::string_view text, const char* what, const std::string& task_id) {
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number overflow
    throw malformed_message(std::string(what) + " is not JSON: " + e.what(), task_id);
  }
}

std::string peek_id(const json& headers, const json* body) {
  for (const json* o : {&headers, body}) {
    if (o == nullptr || !o->is_object())
      continue;
    const auto it = o->find("id");
    if (it != o->end() && it->is_string())
      return it->get<std::string>();
  }
  return {};
}

void check_time(const std::optional<std::string>& t, const char* key, const std::string& id) {
  if (!t)
    return;
  try {
    (void)parse_iso8601(*t);
  } catch (const std::invalid_argument& e) {
    throw malformed_message(std::string("header '") + key + "': " + e.what(), id);
  }
}

/// The fields both protocols carry (headers in 2, the body in 1): name, id, times, group,
/// retries and time limits.
void read_common_fields(const fields& f, task_message& m) {
  m.task = f.text("task").value_or("");
  m.id = f.text("id").value_or("");
  if (m.task.empty())
    f.fail("task", "is empty");
  if (m.id.empty())
    f.fail("id", "is missing or empty");
  m.eta = f.text("eta");
  m.expires = f.text("expires");
  m.group = f.text("group");
  m.group_index = f.integer("group_index");
  m.retries = f.integer("retries").value_or(0);
  if (const json* tl = f.find("timelimit")) {
    if (!tl->is_array() || tl->size() != 2)
      f.fail("timelimit", "must be [hard, soft]");
    m.time_limit_hard = f.seconds((*tl)[0], "timelimit");
    m.time_limit_soft = f.seconds((*tl)[1], "timelimit");
  }
}

/// The members of `object` whose keys are not in `known`, in their order.
template <std::size_t N>
json unknown_members(const json& object, const char* const (&known)[N]) {
  json out = json::object();
  for (const auto& [key, value] : object.items()) {
    bool is_known = false;
    for (const char* k : known) is_known = is_known || key == k;
    if (!is_known)
      out[key] = value;
  }
  return out;
}

/// Headers and body of either protocol into `m` (properties already set).
void decode_task(task_message& m, const json& headers, std::string_view body_text) {
  if (!headers.is_object())
    throw malformed_message(std::string("headers must be an object, not ") + type_name(headers),
                            {});
  std::string id = peek_id(headers, nullptr);
  if (m.content_type != "application/json")
    throw malformed_message(
        "content_type '" + m.content_type + "' is not supported (only application/json)", id);
  const json body = parse(body_text, "body", id);
  const auto task_it = headers.find("task");
  if (task_it != headers.end()) {
    m.protocol = 2;
    const fields h{headers, "header", id};
    read_common_fields(h, m);
    m.lang = h.text("lang").value_or("py");
    m.shadow = h.text("shadow");
    m.root_id = h.text("root_id");
    m.parent_id = h.text("parent_id");
    m.argsrepr = h.text("argsrepr");
    m.kwargsrepr = h.text("kwargsrepr");
    m.origin = h.text("origin");
    m.ignore_result = h.boolean("ignore_result");
    static constexpr const char* k_known[] = {"lang",
                                              "task",
                                              "id",
                                              "shadow",
                                              "eta",
                                              "expires",
                                              "group",
                                              "group_index",
                                              "retries",
                                              "timelimit",
                                              "root_id",
                                              "parent_id",
                                              "argsrepr",
                                              "kwargsrepr",
                                              "origin",
                                              "ignore_result"};
    m.extra_headers = unknown_members(headers, k_known);
    if (!body.is_array())
      throw malformed_message(
          std::string("body must be [args, kwargs, embed], not ") + type_name(body), m.id);
    if (body.size() != 3)
      throw malformed_message("body has " + std::to_string(body.size()) +
                                  " elements, expected 3 ([args, kwargs, embed])",
                              m.id);
    if (!body[0].is_array())
      throw malformed_message(std::string("body: args must be a list, not ") + type_name(body[0]),
                              m.id);
    if (!body[1].is_object())
      throw malformed_message(
          std::string("body: kwargs must be an object, not ") + type_name(body[1]), m.id);
    if (!body[2].is_object() && !body[2].is_null())
      throw malformed_message(
          std::string("body: embed must be an object or null, not ") + type_name(body[2]), m.id);
    m.args = body[0];
    m.kwargs = body[1];
    if (body[2].is_object()) {
      const fields e{body[2], "embed", m.id};
      m.callbacks = e.signatures("callbacks");
      m.errbacks = e.signatures("errbacks");
      m.chain = e.signatures("chain");
      m.chord = e.signatures("chord");
    }
  } else {
    id = peek_id(headers, &body);
    if (!body.is_object() || !body.contains("task"))
      throw malformed_message(
          "no task name: neither headers.task (protocol 2) nor body.task (protocol 1)", id);
    m.protocol = 1;
    const fields b{body, "body field", id};
    read_common_fields(b, m);
    const json* args = b.find("args");
    const json* kwargs = b.find("kwargs");
    if (args != nullptr && !args->is_array())
      b.fail("args", std::string("must be a list, not ") + type_name(*args));
    if (kwargs != nullptr && !kwargs->is_object())
      b.fail("kwargs", std::string("must be an object, not ") + type_name(*kwargs));
    m.args = args != nullptr ? *args : json::array();
    m.kwargs = kwargs != nullptr ? *kwargs : json::object();
    m.callbacks = b.signatures("callbacks");
    m.errbacks = b.signatures("errbacks");
    m.chord = b.signatures("chord");
  }
  check_time(m.eta, "eta", m.id);
  check_time(m.expires, "expires", m.id);
  if (m.correlation_id.empty())
    m.correlation_id = m.id;
}

bool is_utf8_name(std::string_view e) {
  return e == "utf-8" || e == "utf8" || e == "UTF-8";
}

void check_size(std::size_t n, const decode_limits& limits) {
  if (n > limits.max_bytes)
    throw malformed_message("message of " + std::to_string(n) + " bytes exceeds the limit of " +
                                std::to_string(limits.max_bytes),
                            {});
}

}  // namespace

task_message decode_redis_envelope(std::string_view text, const decode_limits& limits) {
  check_size(text.size(), limits);
  const json envelope = parse(text, "envelope", {});
  if (!envelope.is_object())
    throw malformed_message(std::string("envelope must be an object, not ") + type_name(envelope),
                            {});
  const json headers = envelope.contains("headers") && !envelope["headers"].is_null()
                           ? envelope["headers"]
                           : json::object();
  const std::string id = peek_id(headers, nullptr);
  const fields env{envelope, "envelope field", id};
  task_message m;
  const auto content_type = env.text("content-type");
  if (!content_type)
    env.fail("content-type", "is missing");
  m.content_type = *content_type;
  m.content_encoding = env.text("content-encoding").value_or("utf-8");
  if (!is_utf8_name(m.content_encoding))
    env.fail("content-encoding", "'" + m.content_encoding + "' is not supported (only utf-8)");
  const auto body = env.text("body");
  if (!body)
    env.fail("body", "is missing");
  std::string body_text = *body;
  if (const json* p = env.find("properties")) {
    if (!p->is_object())
      env.fail("properties", std::string("must be an object, not ") + type_name(*p));
    const fields props{*p, "property", id};
    if (const auto encoding = props.text("body_encoding")) {
      if (*encoding != "base64")
        props.fail("body_encoding", "'" + *encoding + "' is not supported (only base64)");
      try {
        body_text = base64_decode(body_text);
      } catch (const std::invalid_argument& e) {
        throw malformed_message(std::string("body: ") + e.what(), id);
      }
    }
    m.correlation_id = props.text("correlation_id").value_or("");
    m.reply_to = props.text("reply_to");
    m.delivery_mode = static_cast<int>(props.integer("delivery_mode").value_or(2));
    m.expiration = props.text("expiration");
    static constexpr const char* k_known[] = {"correlation_id",
                                              "reply_to",
                                              "delivery_mode",
                                              "expiration",
                                              "delivery_info",
                                              "priority",
                                              "body_encoding",
                                              "delivery_tag"};
    m.extra_properties = unknown_members(*p, k_known);
    m.priority = static_cast<int>(props.integer("priority").value_or(0));
    m.delivery_tag = props.text("delivery_tag").value_or("");
    if (const json* info = props.find("delivery_info")) {
      if (!info->is_object())
        props.fail("delivery_info", "must be an object");
      const fields di{*info, "delivery_info", id};
      m.exchange = di.text("exchange").value_or("");
      m.routing_key = di.text("routing_key").value_or("");
      m.redelivered = di.boolean("redelivered");
    }
  }
  decode_task(m, headers, body_text);
  return m;
}

task_message decode_amqp(const amqp_delivery& d,
                         std::string_view body,
                         const decode_limits& limits) {
  check_size(body.size(), limits);
  const std::string id = peek_id(d.headers, nullptr);
  if (!d.content_type)
    throw malformed_message("content_type is missing (Celery sends application/json)", id);
  task_message m;
  m.content_type = *d.content_type;
  m.content_encoding = d.content_encoding.value_or("utf-8");
  if (!is_utf8_name(m.content_encoding))
    throw malformed_message(
        "content_encoding '" + m.content_encoding + "' is not supported (only utf-8)", id);
  m.correlation_id = d.correlation_id.value_or("");
  m.reply_to = d.reply_to;
  m.priority = d.priority;
  m.delivery_mode = d.delivery_mode;
  m.delivery_tag = d.delivery_tag;
  m.exchange = d.exchange;
  m.routing_key = d.routing_key;
  m.redelivered = d.redelivered;
  decode_task(m, d.headers, body);
  return m;
}

namespace {

json optional_text(const std::optional<std::string>& s) {
  return s ? json(*s) : json(nullptr);
}
json optional_seconds(const std::optional<double>& s) {
  if (!s)
    return nullptr;
  const double whole = static_cast<double>(static_cast<std::int64_t>(*s));
  return whole == *s ? json(static_cast<std::int64_t>(*s)) : json(*s);
}

}  // namespace

json encode_headers(const task_message& m) {
  json h = json::object();
  h["lang"] = m.lang;
  h["task"] = m.task;
  h["id"] = m.id;
  h["shadow"] = optional_text(m.shadow);
  h["eta"] = optional_text(m.eta);
  h["expires"] = optional_text(m.expires);
  h["group"] = optional_text(m.group);
  h["group_index"] = m.group_index ? json(*m.group_index) : json(nullptr);
  h["retries"] = m.retries;
  h["timelimit"] =
      json::array({optional_seconds(m.time_limit_hard), optional_seconds(m.time_limit_soft)});
  h["root_id"] = m.root_id ? json(*m.root_id) : json(m.id);
  h["parent_id"] = optional_text(m.parent_id);
  h["argsrepr"] = m.argsrepr ? json(*m.argsrepr) : json(dumps(m.args));
  h["kwargsrepr"] = m.kwargsrepr ? json(*m.kwargsrepr) : json(dumps(m.kwargs));
  h["origin"] = optional_text(m.origin);
  h["ignore_result"] = m.ignore_result;
  for (const auto& [key, value] : m.extra_headers.items()) h[key] = value;
  return h;
}

std::string encode_body(const task_message& m) {
  json embed = json::object();
  embed["callbacks"] = m.callbacks;
  embed["errbacks"] = m.errbacks;
  embed["chain"] = m.chain;
  embed["chord"] = m.chord;
  return dumps(json::array({m.args, m.kwargs, embed}));
}

std::string encode_redis_envelope(const task_message& m) {
  json properties = json::object();
  properties["correlation_id"] = m.correlation_id.empty() ? m.id : m.correlation_id;
  if (m.reply_to)
    properties["reply_to"] = *m.reply_to;
  for (const auto& [key, value] : m.extra_properties.items()) properties[key] = value;
  properties["delivery_mode"] = m.delivery_mode;
  if (m.expiration)
    properties["expiration"] = *m.expiration;
  properties["delivery_info"] = {{"exchange", m.exchange}, {"routing_key", m.routing_key}};
  if (m.redelivered)
    properties["delivery_info"]["redelivered"] = true;
  properties["priority"] = m.priority;
  properties["body_encoding"] = "base64";
  properties["delivery_tag"] = m.delivery_tag;
  json envelope = json::object();
  envelope["body"] = base64_encode(encode_body(m));
  envelope["content-encoding"] = m.content_encoding;
  envelope["content-type"] = m.content_type;
  envelope["headers"] = encode_headers(m);
  envelope["properties"] = std::move(properties);
  return dumps(envelope);
}

std::string redis_priority_list(std::string_view queue, int priority) {
  std::string list(queue);
  if (priority >= 9)
    list +=
        "\x06\x16"
        "9";
  else if (priority >= 6)
    list +=
        "\x06\x16"
        "6";
  else if (priority >= 3)
    list +=
        "\x06\x16"
        "3";
  return list;
}

}  // namespace offload::broker::celery
