#include <offload/broker/celery/python_json.hpp>

namespace offload::broker::celery {
namespace {

void write(const json& v, std::string& out) {
  if (v.is_object()) {
    out += '{';
    bool first = true;
    for (const auto& [key, member] : v.items()) {
      if (!first)
        out += ", ";
      first = false;
      out += json(key).dump(-1, ' ', true);
      out += ": ";
      write(member, out);
    }
    out += '}';
  } else if (v.is_array()) {
    out += '[';
    bool first = true;
    for (const auto& element : v) {
      if (!first)
        out += ", ";
      first = false;
      write(element, out);
    }
    out += ']';
  } else {
    // Scalars: nlohmann's ensure_ascii escaping is Python's (lower-case hex, the same short
    // escapes), and its float text is the shortest round trip, as repr() is.
    out += v.dump(-1, ' ', true);
  }
}

}  // namespace

std::string dumps(const json& value) {
  std::string out;
  write(value, out);
  return out;
}

}  // namespace offload::broker::celery
