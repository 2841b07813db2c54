// Transports and the worker binary against real brokers, started and stopped by the fixtures.
#include <chrono>
#include <set>
#include <thread>

#include "broker_process.hpp"
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <offload/broker/connect.hpp>
#include <offload/broker/redis_transport.hpp>
#include <offload/broker/rpc_client.hpp>

namespace ob = offload::broker;
namespace obt = offload::broker::testing;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

constexpr const char* k_queue = "tasks";

ob::connect_options options(const std::string& broker, int port) {
  ob::connect_options o;
  o.broker = broker;
  o.where.port = port;
  o.where.connect_timeout = 1000ms;
  o.where.io_timeout = 2000ms;
  o.reliable = broker == "redis";
  o.consumer_id = "w1";
  return o;
}

std::unique_ptr<obt::child_process> start_worker(const std::string& broker,
                                                 int port,
                                                 std::vector<std::string> extra = {}) {
  std::vector<std::string> argv{OFFLOAD_WORKER_PATH,
                                "--broker",
                                broker,
                                "--port",
                                std::to_string(port),
                                "--queue",
                                k_queue,
                                "--reconnect-for-ms",
                                "60000",
                                "--io-timeout-ms",
                                "2000"};
  if (broker == "redis") {
    argv.insert(argv.end(), {"--reliable", "--consumer-id", "w1"});
  }
  argv.insert(argv.end(), extra.begin(), extra.end());
  return std::make_unique<obt::child_process>(argv);
}

/// Calls until a reply comes, reconnecting between attempts, for up to `budget`.
ob::message call_until_ok(const std::string& broker,
                          int port,
                          const std::string& task,
                          const std::string& body,
                          std::chrono::milliseconds budget) {
  const auto deadline = clock_type::now() + budget;
  std::string last_error;
  while (clock_type::now() < deadline) {
    try {
      auto t = ob::open_transport(options(broker, port));
      ob::rpc_client client(*t, k_queue);
      return client.call(task, body, 5000ms);
    } catch (const ob::broker_error& e) {
      last_error = e.what();
      std::this_thread::sleep_for(200ms);
    }
  }
  throw std::runtime_error("no reply within the budget; last error: " + last_error);
}

}  // namespace

class BrokerTest : public ::testing::TestWithParam<std::string> {
 protected:
  const std::string& broker() const { return GetParam(); }
};

TEST_P(BrokerTest, RoundTripThroughTheWorker) {
  obt::broker_process server(broker());
  auto worker = start_worker(broker(), server.port());
  auto t = ob::open_transport(options(broker(), server.port()));
  ob::rpc_client client(*t, k_queue);
  const ob::message r = client.call("echo", "hello offload", 10000ms);
  EXPECT_EQ(r.task, "ok");
  EXPECT_EQ(r.body, "hello offload");
  EXPECT_FALSE(r.idempotency_key.empty());
  // Several in flight at once, all answered.
  std::set<std::string> ids;
  for (int i = 0; i < 50; ++i) {
    ids.insert(client.send("spin_us", "100"));
  }
  while (!ids.empty()) {
    auto reply = client.next_reply(10000ms);
    ASSERT_TRUE(reply) << "missing replies: " << ids.size();
    EXPECT_EQ(reply->task, "ok");
    EXPECT_EQ(ids.erase(reply->correlation_id), 1u);
  }
  EXPECT_EQ(worker->terminate(), 0) << worker->stderr_text();
}

TEST_P(BrokerTest, FailingTaskIsRetriedThenDeadLetteredWithItsReason) {
  obt::broker_process server(broker());
  auto worker = start_worker(broker(), server.port(), {"--max-attempts", "3"});
  auto t = ob::open_transport(options(broker(), server.port()));
  ob::rpc_client client(*t, k_queue);
  const ob::message r = client.call("fail", "", 10000ms);
  EXPECT_EQ(r.task, "error");
  EXPECT_NE(r.error.find("failed on purpose"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("attempt 3 of 3"), std::string::npos) << r.error;
  auto dead = t->receive(std::string(k_queue) + ".dead", 5000ms);
  ASSERT_TRUE(dead && dead->msg);
  EXPECT_EQ(dead->msg->task, "fail");
  EXPECT_EQ(dead->msg->attempt, 3u);
  EXPECT_NE(dead->msg->error.find("failed on purpose"), std::string::npos);
  t->ack(*dead);
  const std::string log = worker->stderr_text();
  EXPECT_NE(log.find("retrying fail"), std::string::npos) << log;
}

TEST_P(BrokerTest, MalformedMessageIsDeadLetteredAndTheWorkerKeepsGoing) {
  obt::broker_process server(broker());
  auto worker = start_worker(broker(), server.port());
  auto t = ob::open_transport(options(broker(), server.port()));
  t->declare(k_queue);
  if (broker() == "redis") {
    dynamic_cast<ob::redis_transport&>(*t).push_raw(k_queue, "definitely not a message");
  } else {
    ob::message unnamed;  // no task name: the AMQP type property is empty
    unnamed.body = "definitely not a message";
    t->publish(k_queue, unnamed);
  }
  ob::rpc_client client(*t, k_queue);
  EXPECT_EQ(client.call("echo", "still here", 10000ms).body, "still here");
  auto dead = t->receive(std::string(k_queue) + ".dead", 5000ms);
  ASSERT_TRUE(dead && dead->msg);
  EXPECT_EQ(dead->msg->task, "malformed");
  EXPECT_EQ(dead->msg->body, "definitely not a message");
  EXPECT_NE(dead->msg->error.find("malformed"), std::string::npos) << dead->msg->error;
  t->ack(*dead);
  ob::message unknown_reply = client.call("no_such_task", "", 10000ms);
  EXPECT_EQ(unknown_reply.task, "error");
  EXPECT_NE(unknown_reply.error.find("unknown task"), std::string::npos);
}

TEST_P(BrokerTest, WorkerCrashBeforeAckLosesNothing) {
  obt::broker_process server(broker());
  auto t = ob::open_transport(options(broker(), server.port()));
  ob::rpc_client client(*t, k_queue);
  auto first = start_worker(broker(), server.port());
  // Once a round trip has worked, the worker is consuming.
  ASSERT_EQ(client.call("echo", "up", 20000ms).body, "up") << first->stderr_text();
  const std::string id = client.send("spin_us", "3000000");  // 3 s of work
  // Wait until the worker holds it (received, not acked): the queue reads empty twice in a row
  // (RabbitMQ may answer the first read before it has routed the message).
  const auto deadline = clock_type::now() + 10s;
  int empty_reads = 0;
  while (empty_reads < 2 && clock_type::now() < deadline) {
    empty_reads = t->length(k_queue) == 0 ? empty_reads + 1 : 0;
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_EQ(empty_reads, 2) << "the worker never took the message";
  std::this_thread::sleep_for(300ms);
  first->kill_hard();
  EXPECT_FALSE(client.next_reply(300ms)) << "the crashed worker cannot have replied";
  // RabbitMQ requeues it when the connection drops; Redis: the restarted worker of the same
  // consumer id recovers its processing list.
  auto second = start_worker(broker(), server.port());
  auto reply = client.next_reply(15000ms);
  ASSERT_TRUE(reply) << second->stderr_text();
  EXPECT_EQ(reply->correlation_id, id);
  EXPECT_EQ(reply->task, "ok");
  if (broker() == "redis") {
    EXPECT_NE(second->stderr_text().find("recovered 1 message"), std::string::npos)
        << second->stderr_text();
  }
}

TEST_P(BrokerTest, BrokerRestartedMidStreamReconnects) {
  obt::broker_process server(broker());
  auto worker = start_worker(broker(), server.port());
  EXPECT_EQ(call_until_ok(broker(), server.port(), "echo", "before", 20s).body, "before");
  server.restart();
  EXPECT_EQ(call_until_ok(broker(), server.port(), "echo", "after", 40s).body, "after");
  const std::string log = worker->stderr_text();
  EXPECT_NE(log.find("reconnected"), std::string::npos) << log;
  EXPECT_EQ(worker->terminate(), 0) << worker->stderr_text();
}

TEST_P(BrokerTest, DownBrokerIsAClearErrorWithinBoundedTime) {
  // A port nobody listens on: refused at once.
  int port = 0;
  {
    obt::broker_process server(broker());
    port = server.port();
  }
  const auto t0 = clock_type::now();
  try {
    ob::open_transport(options(broker(), port));
    FAIL() << "connected to a stopped broker";
  } catch (const ob::broker_error& e) {
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(port)), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find(broker()), std::string::npos) << e.what();
  }
  EXPECT_LT(clock_type::now() - t0, 3s);
  // The worker gives up after --reconnect-for-ms with the same kind of message.
  obt::child_process w({OFFLOAD_WORKER_PATH,
                        "--broker",
                        broker(),
                        "--port",
                        std::to_string(port),
                        "--reconnect-for-ms",
                        "1000"});
  EXPECT_EQ(w.wait_exit(10s), 1);
  EXPECT_NE(w.stderr_text().find("127.0.0.1:" + std::to_string(port)), std::string::npos)
      << w.stderr_text();
}

TEST_P(BrokerTest, BrokerDyingWhileACallerWaitsIsAnErrorNotAHang) {
  obt::broker_process server(broker());
  auto worker = start_worker(broker(), server.port());
  auto t = ob::open_transport(options(broker(), server.port()));
  ob::rpc_client client(*t, k_queue);
  std::thread killer([&] {
    std::this_thread::sleep_for(500ms);
    server.stop();
  });
  const auto t0 = clock_type::now();
  try {
    client.call("spin_us", "30000000", 60s);  // 30 s of work: the broker dies long before
    ADD_FAILURE() << "a reply came from a stopped broker";
  } catch (const ob::broker_error& e) {
    EXPECT_NE(std::string(e.what()).find(std::to_string(server.port())), std::string::npos)
        << e.what();
  }
  killer.join();
  EXPECT_LT(clock_type::now() - t0, 20s);
  worker->kill_hard();
}

TEST_P(BrokerTest, SilentServerTimesOutInsteadOfHanging) {
  // Accepts TCP connections (the kernel does) but never answers.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(fd, 16), 0);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const int port = ntohs(addr.sin_port);
  const auto t0 = clock_type::now();
  EXPECT_THROW(
      {
        auto t = ob::open_transport(options(broker(), port));
        t->declare(k_queue);
      },
      ob::broker_error);
  EXPECT_LT(clock_type::now() - t0, 6s);
  close(fd);
}

// A Redis error reply to one command (WRONGTYPE: the message's reply_to names a string key) is
// about that message, not a lost connection: it is dead-lettered with the broker's error, the
// worker goes on with the next message, and nothing stays in its processing list.
TEST(RedisWorker, AnErrorReplyDeadLettersThatMessageAndTheWorkerGoesOn) {
  obt::broker_process server("redis");
  obt::run_command("redis-cli -p " + std::to_string(server.port()) + " SET not_a_list x");
  auto t = ob::open_transport(options("redis", server.port()));
  ob::message poisoned;
  poisoned.task = "echo";
  poisoned.body = "to a string key";
  poisoned.correlation_id = "poisoned";
  poisoned.reply_to = "not_a_list";
  poisoned.attempt = 1;
  t->publish(k_queue, poisoned);
  auto worker = start_worker("redis", server.port());
  ob::rpc_client client(*t, k_queue);
  EXPECT_EQ(client.call("echo", "after it", 10000ms).body, "after it") << worker->stderr_text();
  auto dead = t->receive(std::string(k_queue) + ".dead", 5000ms);
  ASSERT_TRUE(dead && dead->msg) << worker->stderr_text();
  EXPECT_EQ(dead->msg->correlation_id, "poisoned");
  EXPECT_NE(dead->msg->error.find("WRONGTYPE"), std::string::npos) << dead->msg->error;
  t->ack(*dead);
  const std::string processing =
      obt::run_command("redis-cli -p " + std::to_string(server.port()) + " LLEN " +
                       std::string(k_queue) + ".processing.w1");
  EXPECT_EQ(processing, "0\n");
  const std::string log = worker->stderr_text();
  EXPECT_EQ(log.find("reconnecting"), std::string::npos) << log;  // not a lost connection
  EXPECT_EQ(worker->terminate(), 0) << log;
}

// A queue that is not a list cannot be consumed: the worker says so and exits 1 at once.
TEST(RedisWorker, AQueueOfAnotherTypeStopsTheWorkerWithTheBrokersError) {
  obt::broker_process server("redis");
  obt::run_command("redis-cli -p " + std::to_string(server.port()) + " SET " + k_queue + " x");
  auto worker = start_worker("redis", server.port());
  EXPECT_EQ(worker->wait_exit(10s), 1);
  const std::string log = worker->stderr_text();
  EXPECT_NE(log.find("WRONGTYPE"), std::string::npos) << log;
  EXPECT_NE(log.find("cannot consume"), std::string::npos) << log;
}

// Bad arguments exit 2, as the usage says, naming the argument.
TEST(WorkerArguments, BadValuesExitTwo) {
  const std::vector<std::vector<std::string>> bad = {
      {"--threads", "0"},
      {"--max-attempts", "0"},
      {"--threads", "-1"},
      {"--max-in-flight", "-3"},
  };
  for (const auto& extra : bad) {
    std::vector<std::string> argv{OFFLOAD_WORKER_PATH, "--broker", "redis", "--port", "1"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    obt::child_process w(argv);
    EXPECT_EQ(w.wait_exit(10s), 2) << extra[0] << " " << extra[1] << ": " << w.stderr_text();
    EXPECT_NE(w.stderr_text().find(extra[0]), std::string::npos) << w.stderr_text();
  }
  obt::child_process w({OFFLOAD_WORKER_PATH, "--broker", "kafka", "--port", "1"});
  EXPECT_EQ(w.wait_exit(10s), 2) << w.stderr_text();
  EXPECT_NE(w.stderr_text().find("kafka"), std::string::npos) << w.stderr_text();
}

std::string broker_name(const ::testing::TestParamInfo<std::string>& p) {
  return p.param;
}

INSTANTIATE_TEST_SUITE_P(Brokers, BrokerTest, ::testing::Values("redis", "rabbitmq"), broker_name);
