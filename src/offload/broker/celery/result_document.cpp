#include <array>
#include <stdexcept>
#include <utility>

#include <offload/broker/celery/result_document.hpp>

namespace offload::broker::celery {
namespace {

constexpr std::array<std::string_view, 8> k_status_names{
    "PENDING", "RECEIVED", "STARTED", "RETRY", "SUCCESS", "FAILURE", "REVOKED", "REJECTED"};

bool carries_exception(task_status s) noexcept {
  return s == task_status::retry || s == task_status::failure || s == task_status::revoked;
}

json optional_text(const std::optional<std::string>& s) {
  return s ? json(*s) : json(nullptr);
}

}  // namespace

std::string_view to_string(task_status s) noexcept {
  return k_status_names[static_cast<std::size_t>(s)];
}

task_status parse_task_status(std::string_view text) {
  for (std::size_t i = 0; i < k_status_names.size(); ++i)
    if (k_status_names[i] == text)
      return static_cast<task_status>(i);
  throw std::invalid_argument("'" + std::string(text) + "' is not a Celery task state");
}

bool is_ready(task_status s) noexcept {
  return s == task_status::success || s == task_status::failure || s == task_status::revoked;
}

json remote_exception::to_json() const {
  json e = json::object();
  e["exc_type"] = type;
  e["exc_message"] = message;
  e["exc_module"] = optional_text(module);
  return e;
}

remote_exception remote_exception::from_json(const json& v) {
  if (!v.is_object())
    throw std::invalid_argument(std::string("an exception must be {exc_type, exc_message, "
                                            "exc_module}, not ") +
                                v.type_name());
  const auto type = v.find("exc_type");
  if (type == v.end() || !type->is_string())
    throw std::invalid_argument("an exception needs exc_type as a string");
  remote_exception e;
  e.type = type->get<std::string>();
  if (const auto m = v.find("exc_message"); m != v.end())
    e.message = m->is_array() ? *m : json::array({*m});
  if (const auto mod = v.find("exc_module"); mod != v.end() && mod->is_string())
    e.module = mod->get<std::string>();
  return e;
}

std::string remote_exception::text() const {
  if (message.empty())
    return {};
  const json& first = message.front();
  std::string out = first.is_string() ? first.get<std::string>() : dumps(first);
  for (std::size_t i = 1; i < message.size(); ++i) out += ", " + dumps(message[i]);
  return out;
}

result_document result_document::success(std::string task_id, json value, std::string date_done) {
  result_document d;
  d.status = task_status::success;
  d.result = std::move(value);
  d.date_done = std::move(date_done);
  d.task_id = std::move(task_id);
  return d;
}

result_document result_document::failure(std::string task_id,
                                         remote_exception e,
                                         std::optional<std::string> traceback,
                                         std::string date_done) {
  result_document d;
  d.status = task_status::failure;
  d.result = e.to_json();
  d.traceback = std::move(traceback);
  d.date_done = std::move(date_done);
  d.task_id = std::move(task_id);
  return d;
}

result_document result_document::retry(std::string task_id,
                                       remote_exception e,
                                       std::optional<std::string> traceback) {
  result_document d;
  d.status = task_status::retry;
  d.result = e.to_json();
  d.traceback = std::move(traceback);
  d.task_id = std::move(task_id);
  return d;
}

result_document result_document::revoked(std::string task_id,
                                         std::string reason,
                                         std::string date_done) {
  result_document d;
  d.status = task_status::revoked;
  d.result =
      remote_exception{"TaskRevokedError", json::array({std::move(reason)}), "celery.exceptions"}
          .to_json();
  d.date_done = std::move(date_done);
  d.task_id = std::move(task_id);
  return d;
}

std::string encode_redis_result(const result_document& d) {
  json doc = json::object();
  doc["status"] = std::string(to_string(d.status));
  doc["result"] = d.result;
  doc["traceback"] = optional_text(d.traceback);
  doc["children"] = d.children;
  doc["date_done"] = optional_text(d.date_done);
  if (d.group_id)
    doc["group_id"] = *d.group_id;
  if (d.parent_id)
    doc["parent_id"] = *d.parent_id;
  doc["task_id"] = d.task_id;
  return dumps(doc);
}

std::string encode_rpc_result(const result_document& d) {
  json doc = json::object();
  doc["task_id"] = d.task_id;
  doc["status"] = std::string(to_string(d.status));
  doc["result"] = d.result;
  doc["traceback"] = optional_text(d.traceback);
  doc["children"] = d.children;
  return dumps(doc);
}

result_document decode_result(std::string_view text) {
  json doc;
  try {
    doc = json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number overflow
    throw std::invalid_argument(std::string("result document is not JSON: ") + e.what());
  }
  if (!doc.is_object())
    throw std::invalid_argument("result document must be an object");
  const auto id = doc.find("task_id");
  if (id == doc.end() || !id->is_string())
    throw std::invalid_argument("result document has no task_id");
  const auto status = doc.find("status");
  if (status == doc.end() || !status->is_string())
    throw std::invalid_argument("result document has no status");
  result_document d;
  d.task_id = id->get<std::string>();
  d.status = parse_task_status(status->get<std::string>());
  if (const auto r = doc.find("result"); r != doc.end())
    d.result = *r;
  if (carries_exception(d.status))
    (void)remote_exception::from_json(d.result);
  const auto text_of = [&](const char* key) -> std::optional<std::string> {
    const auto it = doc.find(key);
    if (it == doc.end() || !it->is_string())
      return std::nullopt;
    return it->get<std::string>();
  };
  d.traceback = text_of("traceback");
  d.date_done = text_of("date_done");
  d.group_id = text_of("group_id");
  d.parent_id = text_of("parent_id");
  if (const auto c = doc.find("children"); c != doc.end() && c->is_array())
    d.children = *c;
  return d;
}

}  // namespace offload::broker::celery
