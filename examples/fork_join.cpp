// fork_join: recursive parallelism with task_group; waiting inside a worker helps run work.
//
//            fib(n)
//          /        |
//   run(fib(n-1))   fib(n-2) inline  ──wait──▶ a + b
#include <cstdio>

#include <offload/offload.hpp>

long fib(offload::executor& ex, int n) {
  if (n < 20)
    return n < 2 ? n : fib(ex, n - 1) + fib(ex, n - 2);  // cut-off: serial below 20
  long a = 0;
  offload::task_group g{ex};
  g.run([&] {
    a = fib(ex, n - 1);
  });
  const long b = fib(ex, n - 2);
  g.wait();
  return a + b;
}

int main() {
  offload::executor ex;  // one worker per hardware thread
  std::printf("fib(32) = %ld on %u workers\n",
              ex.submit([&] {
                  return fib(ex, 32);
                }).get(),
              ex.worker_count());
  return 0;
}
