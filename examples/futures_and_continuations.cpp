// futures_and_continuations: chain work with then(), combine with when_all/when_any, cancel.
//
//   fetch_price ──then──▶ add_tax ──then──▶ format
//   [a] [b] [c] ──when_all──▶ sum
#include <cstdio>
#include <string>
#include <vector>

#include <offload/offload.hpp>

int main() {
  offload::executor ex{offload::executor_options{.workers = 2}};

  auto label = ex.submit([] {
                   return 100.0;
                 })  // fetch a price
                   .then([](double p) {
                     return p * 1.2;
                   })  // add tax, on a worker
                   .then([](double p) {
                     return "total: " + std::to_string(p);
                   });
  std::printf("%s\n", label.get().c_str());

  std::vector<offload::future<int>> parts;
  for (int i = 1; i <= 3; ++i)
    parts.push_back(ex.submit([i] {
      return i * 10;
    }));
  int sum = 0;
  for (auto& part : offload::when_all(std::move(parts)).get()) sum += part.get();
  std::printf("sum of parts: %d\n", sum);

  auto first = offload::when_any(ex.submit([] {
                 return 1;
               }),
                                 ex.submit([] {
                                   return 2;
                                 }))
                   .get();
  std::printf("first ready: input %zu\n", first.index);

  offload::promise<std::string> reply;
  auto greeting = reply.get_future().then([](std::string s) {
    return s + ", world";
  });
  reply.set_value("hello");
  std::printf("%s\n", greeting.get().c_str());
  return 0;
}
