// The parts of the Celery worker that need no broker: URLs as Celery writes them, binding of
// args/kwargs to typed parameters by Python's rules, and C++ exceptions as Python sees them.
#include <stdexcept>

#include <gtest/gtest.h>

#include <offload/broker/celery/broker_url.hpp>
#include <offload/broker/celery/task_registry.hpp>
#include <offload/broker/celery/uuid.hpp>

using namespace offload::broker::celery;

namespace {

json call(const task_registry& r, const char* name, json args, json kwargs = json::object()) {
  return r.find(name)->call(task_request{}, args, kwargs);
}

std::string type_error_of(const task_registry& r,
                          const char* name,
                          json args,
                          json kwargs = json::object()) {
  try {
    call(r, name, std::move(args), std::move(kwargs));
  } catch (const task_error& e) {
    EXPECT_EQ(e.type(), "TypeError");
    return e.what();
  }
  ADD_FAILURE() << "no TypeError";
  return {};
}

}  // namespace

TEST(CeleryBrokerUrl, ReadsCeleryForms) {
  broker_url u = parse_broker_url("redis://localhost:6390/3");
  EXPECT_EQ(u.scheme, broker_url::kind::redis);
  EXPECT_EQ(u.host, "127.0.0.1");
  EXPECT_EQ(u.port, 6390);
  EXPECT_EQ(u.db, 3);
  u = parse_broker_url("redis://:s%40cret@redis.example");
  EXPECT_EQ(u.port, 6379);
  EXPECT_EQ(u.db, 0);
  EXPECT_EQ(u.password, "s@cret");
  EXPECT_EQ(u.redacted(), "redis://redis.example:6379/0");
  u = parse_broker_url("amqp://guest:guest@localhost:5672//");
  EXPECT_EQ(u.scheme, broker_url::kind::amqp);
  EXPECT_EQ(u.vhost, "/");
  EXPECT_EQ(u.user, "guest");
  EXPECT_EQ(parse_broker_url("amqp://h").vhost, "/");
  EXPECT_EQ(parse_broker_url("amqp://u:p@h/prod").vhost, "prod");
  EXPECT_EQ(parse_broker_url("rpc://").scheme, broker_url::kind::rpc);
  EXPECT_FALSE(parse_broker_url("amqp://h").tls);
  u = parse_broker_url("amqps://u:p@localhost/v");
  EXPECT_TRUE(u.tls);
  EXPECT_EQ(u.port, 5671);
  EXPECT_EQ(u.host, "localhost");  // kept: the certificate names it
  EXPECT_EQ(u.redacted(), "amqps://u@localhost:5671/v");
}

TEST(CeleryBrokerUrl, PairsABrokerWithItsResultBackendAsCeleryDoes) {
  celery_endpoints e = parse_celery_endpoints("redis://h:1/2", "");
  EXPECT_EQ(e.backend.redacted(), "redis://h:1/2");
  e = parse_celery_endpoints("amqp://h", "");
  EXPECT_EQ(e.backend.scheme, broker_url::kind::rpc);
  e = parse_celery_endpoints("amqp://h", "redis://r:3/0");
  EXPECT_EQ(e.backend.redacted(), "redis://r:3/0");
  const auto refused = [](const char* broker, const char* backend) {
    try {
      parse_celery_endpoints(broker, backend);
    } catch (const std::invalid_argument& error) {
      return std::string(error.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(refused("rpc://", "").find("not a broker"), std::string::npos);
  EXPECT_NE(refused("redis://h", "rpc://").find("needs an amqp:// broker"), std::string::npos);
  EXPECT_NE(refused("amqp://h", "amqp://h").find("use rpc:// or redis://"), std::string::npos);
}

TEST(CeleryBrokerUrl, RefusesWithTheReasonAndHidesThePassword) {
  const auto message = [](const char* url) {
    try {
      parse_broker_url(url);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(message("localhost:6379").find("redis://, amqp:// or rpc://"), std::string::npos);
  EXPECT_NE(message("sqs://x").find("scheme 'sqs'"), std::string::npos);
  EXPECT_NE(message("redis://h:70000/0").find("the port"), std::string::npos);
  EXPECT_NE(message("redis://h:6379/x").find("the database"), std::string::npos);
  const std::string hidden = message("redis://:topsecret@h:99999");
  EXPECT_EQ(hidden.find("topsecret"), std::string::npos) << hidden;
}

TEST(CeleryTaskRegistry, BindsArgsThenKwargsByName) {
  task_registry r;
  r.add("t.add", {"x", "y"}, [](int x, int y) {
    return x + y;
  });
  EXPECT_EQ(call(r, "t.add", {2, 3}), 5);
  EXPECT_EQ(call(r, "t.add", json::array(), {{"y", 4}, {"x", 1}}), 5);
  EXPECT_EQ(call(r, "t.add", {10}, {{"y", 1}}), 11);
}

TEST(CeleryTaskRegistry, PythonsBindingErrorsAreTypeErrors) {
  task_registry r;
  r.add("t.add", {"x", "y"}, [](int x, int y) {
    return x + y;
  });
  EXPECT_NE(type_error_of(r, "t.add", {1}).find("missing required argument: 'y'"),
            std::string::npos);
  EXPECT_NE(type_error_of(r, "t.add", {1, 2, 3}).find("takes 2 positional arguments but 3"),
            std::string::npos);
  EXPECT_NE(type_error_of(r, "t.add", {1}, {{"x", 2}}).find("multiple values for argument 'x'"),
            std::string::npos);
  EXPECT_NE(type_error_of(r, "t.add", {1, 2}, {{"z", 2}}).find("unexpected keyword argument 'z'"),
            std::string::npos);
  EXPECT_NE(type_error_of(r, "t.add", {"1", 2}).find("argument 'x' must be an int, not str"),
            std::string::npos);
  EXPECT_NE(type_error_of(r, "t.add", {1.5, 2}).find("not float"), std::string::npos);
  EXPECT_NE(type_error_of(r, "t.add", {std::int64_t{1} << 40, 2}).find("out of range"),
            std::string::npos);
}

TEST(CeleryTaskRegistry, TypesRequestOptionalsAndResults) {
  task_registry r;
  r.add("t.req", {"n"}, [](const task_request& q, unsigned n) {
    return q.id + ":" + std::to_string(n);
  });
  r.add("t.opt", {"a", "b"}, [](std::string a, std::optional<double> b) {
    return json{{"a", a}, {"b", b ? json(*b) : json(nullptr)}};
  });
  r.add("t.void", {}, [] {});
  task_request q;
  q.id = "abc";
  EXPECT_EQ(r.find("t.req")->call(q, {7}, json::object()), "abc:7");
  EXPECT_EQ(call(r, "t.opt", {"x"}), (json{{"a", "x"}, {"b", nullptr}}));
  EXPECT_EQ(call(r, "t.opt", {"x", 2}), (json{{"a", "x"}, {"b", 2.0}}));
  EXPECT_TRUE(call(r, "t.void", json::array()).is_null());
  EXPECT_NE(type_error_of(r, "t.req", {-1}).find("= -1 is out of range"), std::string::npos);
}

TEST(CeleryTaskRegistry, RefusesBadRegistrations) {
  task_registry r;
  r.add("t.a", {"x"}, [](int x) {
    return x;
  });
  EXPECT_THROW(r.add("t.a",
                     {"x"},
                     [](int x) {
                       return x;
                     }),
               std::invalid_argument);
  EXPECT_THROW(r.add("",
                     {"x"},
                     [](int x) {
                       return x;
                     }),
               std::invalid_argument);
  EXPECT_THROW(r.add("t.b",
                     {"x", "y"},
                     [](int x) {
                       return x;
                     }),
               std::invalid_argument);
  EXPECT_THROW(r.add(
                   "t.c",
                   {"x"},
                   [](int x) {
                     return x;
                   },
                   offload::task_options{.retry = offload::retry_policy{.max_attempts = 0}}),
               std::invalid_argument);
  EXPECT_EQ(r.names(), (std::vector<std::string>{"t.a"}));
  EXPECT_EQ(r.find("t.missing"), nullptr);
}

TEST(CeleryTaskRegistry, CppExceptionsAsPythonSeesThem) {
  const auto of = [](auto e) {
    return to_remote_exception(std::make_exception_ptr(e));
  };
  EXPECT_EQ(of(std::invalid_argument("bad")).type, "ValueError");
  EXPECT_EQ(of(std::invalid_argument("bad")).message, json::array({"bad"}));
  EXPECT_EQ(of(std::invalid_argument("bad")).module, "builtins");
  EXPECT_EQ(of(std::out_of_range("i")).type, "IndexError");
  EXPECT_EQ(of(std::runtime_error("r")).type, "RuntimeError");
  EXPECT_EQ(of(std::bad_alloc()).type, "MemoryError");
  const remote_exception custom = of(task_error("InsufficientFunds", "short by 5", ""));
  EXPECT_EQ(custom.type, "InsufficientFunds");
  EXPECT_FALSE(custom.module.has_value());
  EXPECT_EQ(of(42).type, "UnknownCppException");
}

TEST(CeleryUuid, IsVersion4TextAndUnique) {
  const std::string a = uuid4();
  ASSERT_EQ(a.size(), 36u);
  EXPECT_EQ(a[8], '-');
  EXPECT_EQ(a[14], '4');
  EXPECT_NE(std::string("89ab").find(a[19]), std::string::npos);
  EXPECT_NE(a, uuid4());
}
