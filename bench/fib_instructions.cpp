// fib(n) on an executor with one worker, for instruction counts where perf stat has none:
//   valgrind --tool=callgrind --separate-threads=yes ./fib_instructions 24 [fibers 0|1] [futures
//   0|1]
// The worker thread's count (the callgrind.out.<pid>-02 file's summary) is deterministic; compare
// it between builds (docs/benchmarks.md, "The layered executor").
#include <cstdio>
#include <cstdlib>

#include <offload/offload.hpp>

static int fib(offload::executor& ex, int n) {
  if (n < 2)
    return n;
  int a = 0;
  offload::task_group g{ex};
  g.run([&] {
    a = fib(ex, n - 1);
  });
  const int b = fib(ex, n - 2);
  g.wait();
  return a + b;
}
static int fib_futures(offload::executor& ex, int n) {
  if (n < 2)
    return n;
  auto a = ex.submit([&ex, n] {
    return fib_futures(ex, n - 1);
  });
  const int b = fib_futures(ex, n - 2);
  return a.get() + b;
}

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 22;
  const bool fibers = argc > 2 ? std::atoi(argv[2]) != 0 : true;
  const bool futures = argc > 3 ? std::atoi(argv[3]) != 0 : false;
  offload::executor ex{offload::executor_options{.workers = 1, .fibers = fibers}};
  const int r = ex.submit([&] {
                    return futures ? fib_futures(ex, n) : fib(ex, n);
                  }).get();
  std::printf("%d\n", r);
}
