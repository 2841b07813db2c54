#include <offload/broker/celery/python_json.hpp>

namespace offload::broker::celery {
namespace {

/// A string of printable ASCII other than '"' and '\\' is written as it is, quoted; anything
/// else goes through nlohmann's escaping (Python's, see write()).
void write_string(const std::string& text, std::string& out) {
  for (const char c : text)
    if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') {
      out += json(text).dump(-1, ' ', true);
      return;
    }
  out.reserve(out.size() + text.size() + 2);
  out += '"';
  out += text;
  out += '"';
}

void write(const json& v, std::string& out) {
  if (v.is_object()) {
    out += '{';
    bool first = true;
    for (const auto& [key, member] : v.items()) {
      if (!first)
        out += ", ";
      first = false;
      write_string(key, out);
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
  } else if (v.is_string()) {
    write_string(v.get_ref<const std::string&>(), out);
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
