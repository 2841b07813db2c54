// Registers a task of the user's own and builds a worker for it; exits 0 if the task binds its
// arguments as Celery passes them.
#include <iostream>

#include <offload/broker/celery/worker.hpp>
#include <offload/offload.hpp>

int main() {
  using namespace offload::broker::celery;
  task_registry tasks;
  tasks.add("shop.price", {"cents", "currency"}, [](int cents, std::string currency) {
    return std::to_string(cents) + " " + currency;
  });
  const registered_task* t = tasks.find("shop.price");
  const json r = t->call(task_request{}, json::array({250}), json{{"currency", "EUR"}});
  offload::executor ex;
  worker_options o;
  o.broker = "redis://127.0.0.1:1/0";
  worker w(ex, tasks, o);
  std::cout << r.get<std::string>() << " on " << w.hostname() << "\n";
  return r == "250 EUR" ? 0 : 1;
}
