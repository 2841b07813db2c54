#include <algorithm>
#include <cstdio>

#include <offload/broker/celery/base64.hpp>
#include <offload/broker/celery/redis_broker.hpp>
#include <offload/broker/celery/task_message.hpp>
#include <offload/broker/celery/uuid.hpp>

namespace offload::broker::celery {
namespace {

// KEYS: unacked, unacked_index, owner, then the lists in consuming order.
// ARGV: score (now), a tag prefix for elements that carry none, owner name, most to take.
// Takes up to ARGV[4] elements, emptying each list before the next, and records each as kombu
// records it, `[<envelope>, "<exchange>", "<routing_key>"]`, with the envelope text as it was (an
// element that is not a JSON object is stored as a string, so that the record is still JSON for
// whoever restores it). Returns {element, tag, list, element, tag, list, ...}.
constexpr const char* pop_script = R"lua(
local out, max = {}, tonumber(ARGV[4])
for i = 4, #KEYS do
  while #out < 3 * max do
    local m = redis.call('RPOP', KEYS[i])
    if not m then break end
    local tag, ex, rk, record = ARGV[2] .. '.' .. (#out / 3), '', '', nil
    local ok, env = pcall(cjson.decode, m)
    if ok and type(env) == 'table' then
      record = m
      local p = env.properties
      if type(p) == 'table' then
        if type(p.delivery_tag) == 'string' and p.delivery_tag ~= '' then tag = p.delivery_tag end
        local di = p.delivery_info
        if type(di) == 'table' then
          if type(di.exchange) == 'string' then ex = di.exchange end
          if type(di.routing_key) == 'string' then rk = di.routing_key end
        end
      end
    else
      record = cjson.encode(m)
    end
    redis.call('HSET', KEYS[1], tag, '[' .. record .. ', ' .. cjson.encode(ex) .. ', ' .. cjson.encode(rk) .. ']')
    redis.call('ZADD', KEYS[2], ARGV[1], tag)
    redis.call('HSET', KEYS[3], tag, ARGV[3])
    out[#out + 1] = m
    out[#out + 1] = tag
    out[#out + 1] = KEYS[i]
  end
end
return out
)lua";

// KEYS: unacked, unacked_index, owner, list. ARGV: tag, envelope to push.
constexpr const char* restore_script = R"lua(
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then
  redis.call('RPUSH', KEYS[4], ARGV[2])
  return 1
end
return 0
)lua";

// kombu's lock release: delete the mutex only if it still holds our token.
constexpr const char* unlock_script = R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
)lua";

std::string score_text(double seconds) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6f", seconds);
  return buf;
}

constexpr std::string_view binding_sep = "\x06\x16";

}  // namespace

std::string kombu_envelope(std::string_view body,
                           const json& headers,
                           std::string_view exchange,
                           std::string_view routing_key,
                           int delivery_mode) {
  json envelope = json::object();
  envelope["body"] = base64_encode(body);
  envelope["content-encoding"] = "utf-8";
  envelope["content-type"] = "application/json";
  envelope["headers"] = headers;
  envelope["properties"] = {
      {"delivery_mode", delivery_mode},
      {"delivery_info", {{"exchange", exchange}, {"routing_key", routing_key}}},
      {"priority", 0},
      {"body_encoding", "base64"},
      {"delivery_tag", uuid4()}};
  return dumps(envelope);
}

std::vector<held_message> redis_broker::pop(const std::vector<std::string>& queues,
                                            double now,
                                            std::string_view owner,
                                            std::size_t max,
                                            std::chrono::milliseconds wait_first) {
  std::vector<std::string> lists;
  for (const char* bucket : {"0", "3", "6", "9"})
    for (const std::string& q : queues) lists.push_back(redis_priority_list(q, *bucket - '0'));
  const std::string count = std::to_string(3 + lists.size());
  const std::string score = score_text(now);
  const std::string fallback = uuid4();
  const std::string most = std::to_string(std::max<std::size_t>(1, max));
  static const std::string script = pop_script;
  // BLMOVE from a list to its own tail blocks until the list has an element and leaves it as it
  // was; the script runs when it returns, in the same round trip.
  const std::string block = score_text(static_cast<double>(wait_first.count()) / 1000.0);
  const std::string& first_list = lists.front();
  redis_reply r;
  for (int attempt = 0;; ++attempt) {
    redis_connection::args a{"EVALSHA",
                             m_conn.script_sha(script),
                             count,
                             m_keys.unacked,
                             m_keys.unacked_index,
                             m_keys.owner};
    for (const std::string& l : lists) a.push_back(l);
    for (std::string_view v :
         {std::string_view(score), std::string_view(fallback), owner, std::string_view(most)})
      a.push_back(v);
    std::vector<redis_connection::args> cmds;
    if (attempt == 0 && wait_first > std::chrono::milliseconds::zero())
      cmds.push_back({"BLMOVE", first_list, first_list, "RIGHT", "RIGHT", block});
    cmds.push_back(std::move(a));
    std::vector<redis_reply> replies =
        m_conn.pipeline_replies(cmds, attempt == 0 ? wait_first : std::chrono::milliseconds{});
    if (replies.size() == 2 && replies.front().is_error()) {  // else a refused wait spins
      const std::string what =
          m_conn.describe() + ": BLMOVE refused: " + std::string(replies.front().str());
      if (redis_connection::not_ready(replies.front().str()))
        throw broker_error(what);
      throw broker_refused(what);
    }
    r = std::move(replies.back());
    if (!r.is_error())
      break;
    if (attempt == 0 && r.str().substr(0, 8) == "NOSCRIPT") {
      m_conn.forget_scripts();  // the server lost its scripts (restarted, flushed): load again
      continue;
    }
    const std::string what =
        m_conn.describe() + ": the pop script was refused: " + std::string(r.str());
    if (redis_connection::not_ready(r.str()))
      throw broker_error(what);
    throw broker_refused(what);
  }
  std::vector<held_message> out;
  out.reserve(r.size() / 3);
  for (std::size_t i = 0; i + 2 < r.size(); i += 3)
    out.push_back(held_message{std::string(r.element_str(i)),
                               std::string(r.element_str(i + 1)),
                               std::string(r.element_str(i + 2))});
  return out;
}

void redis_broker::ack(std::string_view tag) {
  m_conn.pipeline({{"MULTI"},
                   {"ZREM", m_keys.unacked_index, tag},
                   {"HDEL", m_keys.unacked, tag},
                   {"HDEL", m_keys.owner, tag},
                   {"EXEC"}});
}

void redis_broker::publish(std::string_view queue,
                           int priority,
                           std::string_view envelope,
                           std::string_view ack_tag) {
  const std::string list = redis_priority_list(queue, priority);
  if (ack_tag.empty()) {
    m_conn.command({"LPUSH", list, envelope});
    return;
  }
  m_conn.pipeline({{"MULTI"},
                   {"LPUSH", list, envelope},
                   {"ZREM", m_keys.unacked_index, ack_tag},
                   {"HDEL", m_keys.unacked, ack_tag},
                   {"HDEL", m_keys.owner, ack_tag},
                   {"EXEC"}});
}

void redis_broker::refresh(const std::vector<std::string>& tags, double now) {
  if (tags.empty())
    return;
  const std::string score = score_text(now);
  redis_connection::args a{"ZADD", m_keys.unacked_index, "XX"};
  for (const std::string& t : tags) {
    a.push_back(score);
    a.push_back(t);
  }
  m_conn.command(a);
}

std::size_t redis_broker::restore(double older_than, std::string_view owner) {
  const std::string token = uuid4();
  const redis_reply locked =
      m_conn.command({"SET", m_keys.unacked_mutex, token, "PX", "300000", "NX"});
  if (locked.is_nil())
    return 0;  // another worker is restoring now
  std::vector<std::string> tags;
  {
    const redis_reply old =
        m_conn.command({"ZRANGEBYSCORE", m_keys.unacked_index, "0", score_text(older_than)});
    for (std::size_t i = 0; i < old.size(); ++i) tags.emplace_back(old.element_str(i));
  }
  if (!owner.empty()) {
    const redis_reply owned = m_conn.command({"HGETALL", m_keys.owner});
    for (std::size_t i = 0; i + 1 < owned.size(); i += 2)
      if (owned.element_str(i + 1) == owner)
        tags.emplace_back(owned.element_str(i));
  }
  std::size_t restored = 0;
  try {
    for (const std::string& tag : tags) {
      const redis_reply v = m_conn.command({"HGET", m_keys.unacked, tag});
      std::string list;
      std::string envelope;
      if (v.is_string()) {
        // [envelope, exchange, routing_key]; restored marked redelivered, to its queue's list.
        json record = json::parse(v.str(), nullptr, false);
        if (record.is_array() && record.size() == 3 && record[0].is_object()) {
          json& env = record[0];
          if (env.contains("headers") && env["headers"].is_object())
            env["headers"]["redelivered"] = true;
          int priority = 0;
          if (env.contains("properties") && env["properties"].is_object()) {
            json& p = env["properties"];
            if (p.contains("delivery_info") && p["delivery_info"].is_object())
              p["delivery_info"]["redelivered"] = true;
            if (p.contains("priority") && p["priority"].is_number_integer())
              priority = p["priority"].get<int>();
          }
          const std::string exchange = record[1].is_string() ? record[1].get<std::string>() : "";
          std::string queue = record[2].is_string() ? record[2].get<std::string>() : "";
          if (!exchange.empty())
            if (const auto bound = bound_queues(exchange, queue); !bound.empty())
              queue = bound.front();
          list = redis_priority_list(queue, priority);
          envelope = dumps(env);
        } else if (record.is_array() && record.size() == 3 && record[2].is_string()) {
          list = record[2].get<std::string>();  // a malformed element, put back as it was
          envelope = record[0].is_string() ? record[0].get<std::string>() : record[0].dump();
        }
      }
      if (list.empty()) {
        // Gone (acked meanwhile) or not a record: only drop the index and owner entries.
        m_conn.pipeline({{"ZREM", m_keys.unacked_index, tag}, {"HDEL", m_keys.owner, tag}});
        continue;
      }
      const redis_reply r = m_conn.command({"EVAL",
                                            restore_script,
                                            "4",
                                            m_keys.unacked,
                                            m_keys.unacked_index,
                                            m_keys.owner,
                                            list,
                                            tag,
                                            envelope});
      restored += static_cast<std::size_t>(r.integer());
    }
  } catch (...) {
    try {
      m_conn.command({"EVAL", unlock_script, "1", m_keys.unacked_mutex, token});
    } catch (...) {  // the lock expires by itself
    }
    throw;
  }
  m_conn.command({"EVAL", unlock_script, "1", m_keys.unacked_mutex, token});
  return restored;
}

std::string fanout_prefix(const broker_url& url) {
  std::string prefix(1, '/');  // appended, not `"/" + …`: GCC 12's -Wrestrict misfires on that
  prefix += std::to_string(url.db);
  prefix += '.';
  return prefix;
}

std::string redis_broker::fanout_prefix() const {
  return celery::fanout_prefix(m_conn.url());
}

void redis_broker::fanout(std::string_view exchange,
                          std::string_view routing_key,
                          std::string_view envelope) {
  std::string channel = fanout_prefix() + std::string(exchange);
  if (!routing_key.empty()) {
    channel += '/';
    channel += routing_key;
  }
  m_conn.command({"PUBLISH", channel, envelope});
}

std::vector<std::string> redis_broker::bound_queues(std::string_view exchange,
                                                    std::string_view routing_key) {
  // kombu's binding records: "routing_key\x06\x16pattern\x06\x16queue".
  const redis_reply b = m_conn.command({"SMEMBERS", "_kombu.binding." + std::string(exchange)});
  std::vector<std::string> queues;
  for (std::size_t i = 0; i < b.size(); ++i) {
    const std::string_view member = b.element_str(i);
    const std::size_t s1 = member.find(binding_sep);
    const std::size_t s2 = s1 == std::string_view::npos ? s1 : member.find(binding_sep, s1 + 2);
    if (s2 != std::string_view::npos && member.substr(0, s1) == routing_key)
      queues.emplace_back(member.substr(s2 + 2));
  }
  return queues;
}

std::size_t redis_broker::publish_direct(std::string_view exchange,
                                         std::string_view routing_key,
                                         std::string_view envelope) {
  const std::vector<std::string> queues = bound_queues(exchange, routing_key);
  for (const std::string& q : queues) m_conn.command({"LPUSH", q, envelope});
  return queues.size();
}

}  // namespace offload::broker::celery
