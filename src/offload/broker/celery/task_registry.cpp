#include <new>

#include <offload/broker/celery/task_registry.hpp>

namespace offload::broker::celery {

remote_exception to_remote_exception(const std::exception_ptr& e) {
  remote_exception r;
  r.module = "builtins";
  const auto set = [&](const char* type, const char* what) {
    r.type = type;
    r.message = json::array({what});
  };
  try {
    std::rethrow_exception(e);
  } catch (const task_error& x) {
    r.type = x.type();
    r.message = json::array({x.what()});
    if (x.module().empty())
      r.module = std::nullopt;
    else
      r.module = x.module();
  } catch (const std::invalid_argument& x) {
    set("ValueError", x.what());
  } catch (const std::domain_error& x) {
    set("ValueError", x.what());
  } catch (const std::length_error& x) {
    set("ValueError", x.what());
  } catch (const std::out_of_range& x) {
    set("IndexError", x.what());
  } catch (const std::overflow_error& x) {
    set("OverflowError", x.what());
  } catch (const std::underflow_error& x) {
    set("OverflowError", x.what());
  } catch (const std::bad_alloc& x) {
    set("MemoryError", x.what());
  } catch (const std::exception& x) {
    set("RuntimeError", x.what());
  } catch (...) {
    r.type = "UnknownCppException";
    r.message = json::array({"a C++ exception that is not a std::exception"});
    r.module = std::nullopt;
  }
  return r;
}

namespace detail {

void throw_type_error(std::string text) {
  throw task_error("TypeError", std::move(text));
}

const char* json_type_name(const json& v) noexcept {
  switch (v.type()) {
    case json::value_t::null:
      return "NoneType";
    case json::value_t::boolean:
      return "bool";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "int";
    case json::value_t::number_float:
      return "float";
    case json::value_t::string:
      return "str";
    case json::value_t::array:
      return "list";
    case json::value_t::object:
      return "dict";
    default:
      return "bytes";
  }
}

const json& bind_argument(std::string_view task,
                          const std::vector<std::string>& names,
                          std::size_t i,
                          const json& args,
                          const json& kwargs,
                          bool optional) {
  static const json null_value;
  if (i < args.size())
    return args[i];
  if (const auto it = kwargs.find(names[i]); it != kwargs.end())
    return *it;
  if (optional)
    return null_value;
  throw_type_error(std::string(task) + "() missing required argument: '" + names[i] + "'");
}

void check_arguments(std::string_view task,
                     const std::vector<std::string>& names,
                     const json& args,
                     const json& kwargs) {
  if (!args.is_array())
    throw_type_error(std::string(task) + "() args must be a list, not " + json_type_name(args));
  if (!kwargs.is_object())
    throw_type_error(std::string(task) + "() kwargs must be a dict, not " + json_type_name(kwargs));
  if (args.size() > names.size())
    throw_type_error(std::string(task) + "() takes " + std::to_string(names.size()) +
                     " positional arguments but " + std::to_string(args.size()) + " were given");
  for (const auto& [key, value] : kwargs.items()) {
    std::size_t i = 0;
    while (i < names.size() && names[i] != key) ++i;
    if (i == names.size())
      throw_type_error(std::string(task) + "() got an unexpected keyword argument '" + key + "'");
    if (i < args.size())
      throw_type_error(std::string(task) + "() got multiple values for argument '" + key + "'");
  }
}

}  // namespace detail

void task_registry::insert(registered_task t) {
  if (t.name.empty())
    throw std::invalid_argument("celery task: the name must not be empty");
  t.options.validate();
  if (t.options.name.empty())
    t.options.name = t.name;
  const std::string name = t.name;
  if (!m_tasks.emplace(name, std::move(t)).second)
    throw std::invalid_argument("celery task '" + name + "' is registered already");
}

const registered_task* task_registry::find(std::string_view name) const {
  const auto it = m_tasks.find(name);
  return it == m_tasks.end() ? nullptr : &it->second;
}

std::vector<std::string> task_registry::names() const {
  std::vector<std::string> out;
  for (const auto& [name, t] : m_tasks) out.push_back(name);
  return out;
}

}  // namespace offload::broker::celery
