// hello: submit a task, get its result; post a fire-and-forget task; drain.
//
//   main ──submit──▶ [worker] 6 * 7 ──future──▶ main prints 42
//   main ──post────▶ [worker] prints a greeting
#include <cstdio>

#include <offload/offload.hpp>

int main() {
  offload::executor ex{offload::executor_options{.workers = 2}};

  offload::future<int> answer = ex.submit(
      [](int a, int b) {
        return a * b;
      },
      6,
      7);
  std::printf("answer: %d\n", answer.get());

  ex.post([] {
    std::printf("hello from a worker\n");
  });
  ex.wait_idle();  // everything the tasks did is visible after this
  return 0;
}
