#include <offload/offload.hpp>

int main() {
  offload::executor ex{offload::executor_options{.workers = 2}};
  return ex.submit(
               [](int a, int b) {
                 return a + b;
               },
               40,
               2)
                     .get() == 42
             ? 0
             : 1;
}
