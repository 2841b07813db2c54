// celery_client: sends one Celery task and prints its result as JSON.
//
//   celery_client --broker URL --result-backend URL --task NAME [--args JSON-ARRAY]
//                 [--kwargs JSON-OBJECT] [--countdown S] [--timeout-s S] [--queue Q]
//                 [--queue-max-priority N] [--ca-file PEM]
//
// URLs as Celery's: redis://host:port/db, or amqp://user:pass@host:port/vhost (amqps:// for
// TLS) with rpc:// or redis://… results.
//
// Exits 0 with the result on stdout; 1 on a remote failure ("Type: message" on stderr) or a
// broker error; 2 on bad arguments; 3 if no result came within --timeout-s (default 30).
#include <iostream>

#include <offload/broker/celery/client.hpp>
#include <offload/broker/cli_args.hpp>

int main(int argc, char** argv) {
  using namespace offload::broker::celery;
  client_options co;
  std::string task;
  json args = json::array();
  json kwargs = json::object();
  send_options so;
  double timeout_s = 30;
  try {
    const offload::broker::cli_args cli(argc, argv);
    cli.allow_only({"--broker",
                    "--result-backend",
                    "--task",
                    "--args",
                    "--kwargs",
                    "--queue",
                    "--countdown",
                    "--timeout-s",
                    "--ca-file",
                    "--queue-max-priority"});
    co.broker = cli.value("--broker", co.broker);
    co.result_backend = cli.value("--result-backend", "");
    co.ca_file = cli.value("--ca-file", "");
    co.queue_max_priority = static_cast<int>(cli.number("--queue-max-priority", 0));
    task = cli.value("--task", "");
    if (task.empty())
      throw std::invalid_argument("--task NAME is required");
    const auto parse = [](const std::string& flag, const std::string& text) {
      try {
        return json::parse(text);
      } catch (const json::exception& e) {
        throw std::invalid_argument(flag + " is not JSON: " + e.what());
      }
    };
    args = parse("--args", cli.value("--args", "[]"));
    kwargs = parse("--kwargs", cli.value("--kwargs", "{}"));
    if (!args.is_array())
      throw std::invalid_argument("--args must be a JSON array");
    if (!kwargs.is_object())
      throw std::invalid_argument("--kwargs must be a JSON object");
    so.queue = cli.value("--queue", "celery");
    if (const std::string c = cli.value("--countdown", ""); !c.empty()) {
      const double s = std::stod(c);
      if (!(s >= 0 && s < 1e7))
        throw std::invalid_argument("--countdown must be in [0, 1e7) seconds");
      so.countdown = std::chrono::milliseconds(static_cast<long long>(s * 1000));
    }
    if (const std::string t = cli.value("--timeout-s", ""); !t.empty())
      timeout_s = std::stod(t);
    if (!(timeout_s > 0 && timeout_s < 1e7))
      throw std::invalid_argument("--timeout-s must be in (0, 1e7) seconds");
  } catch (const std::exception& e) {
    std::cerr << "celery_client: " << e.what() << "\n";
    return 2;
  }
  try {
    client c(co);
    offload::future<json> result = c.send(task, args, kwargs, so);
    if (result.wait_for(std::chrono::duration<double>(timeout_s)) != std::future_status::ready) {
      std::cerr << "celery_client: no result for " << task << " within " << timeout_s << " s\n";
      return 3;
    }
    std::cout << dumps(result.get()) << "\n";
    return 0;
  } catch (const remote_task_error& e) {
    std::cerr << e.type() << ": " << e.message() << "\n";
    return 1;
  } catch (const std::invalid_argument& e) {
    std::cerr << "celery_client: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "celery_client: " << e.what() << "\n";
    return 1;
  }
}
