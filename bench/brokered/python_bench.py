"""Round trips through Celery or RQ as a Python caller sees them; prints one JSON object with the
same fields as broker_bench (C++).

  python_bench.py --system celery|rq [--redis-url URL] [--mode pingpong|pipelined]
                  [--in-flight 64] [--work-us 0] [--count 500] [--warmup 20]
                  [--payload 100] [--timeout 30] --path NAME [--variant default]

Celery: task.apply_async(...).get(), broker and backend from OFFLOAD_CELERY_BROKER/_BACKEND.
RQ: Queue.enqueue(...), then the job's status polled every --poll-ms until finished (RQ 1.13 has
no blocking wait for a result). Exits 1 with a message if a result does not come in --timeout s.
"""
import argparse
import collections
import json
import sys
import time


def percentile(sorted_values, q):
    i = int(q * (len(sorted_values) - 1) + 0.5)
    return sorted_values[min(i, len(sorted_values) - 1)]


class CeleryCaller:
    def __init__(self, args):
        import celery_app

        self.task = celery_app.spin_us if args.work_us > 0 else celery_app.noop
        self.work_us = args.work_us

    def send(self, payload):
        if self.work_us > 0:
            return self.task.apply_async((self.work_us, payload))
        return self.task.apply_async((payload,))

    def wait(self, handle, timeout):
        return handle.get(timeout=timeout)


class RqCaller:
    def __init__(self, args):
        import redis
        import rq

        import bench_tasks

        self.queue = rq.Queue("bench", connection=redis.Redis.from_url(args.redis_url))
        self.fn = bench_tasks.spin_us if args.work_us > 0 else bench_tasks.noop
        self.work_us = args.work_us
        self.poll = args.poll_ms / 1000.0

    def send(self, payload):
        if self.work_us > 0:
            return self.queue.enqueue(self.fn, self.work_us, payload)
        return self.queue.enqueue(self.fn, payload)

    def wait(self, job, timeout):
        deadline = time.monotonic() + timeout
        while True:
            status = job.get_status(refresh=True)
            if status == "finished":
                return job.return_value()
            if status == "failed":
                raise RuntimeError("RQ job failed: %s" % job.exc_info)
            if time.monotonic() > deadline:
                raise TimeoutError("no RQ result within %s s (is the worker running?)" % timeout)
            time.sleep(self.poll)


def run(caller, payload, count, in_flight, timeout):
    latencies = []
    pending = collections.deque()
    launched = 0
    while len(latencies) < count:
        while launched < count and len(pending) < in_flight:
            pending.append((time.perf_counter(), caller.send(payload)))
            launched += 1
        t0, handle = pending.popleft()
        if caller.wait(handle, timeout) != "ok":
            raise RuntimeError("unexpected task result")
        latencies.append((time.perf_counter() - t0) * 1e6)
    return latencies


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--system", choices=["celery", "rq"], required=True)
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument("--mode", choices=["pingpong", "pipelined"], default="pingpong")
    p.add_argument("--in-flight", type=int, default=64)
    p.add_argument("--work-us", type=int, default=0)
    p.add_argument("--count", type=int, default=500)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--payload", type=int, default=100)
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--poll-ms", type=float, default=0.5)
    p.add_argument("--path", required=True)
    p.add_argument("--variant", default="default")
    args = p.parse_args()
    in_flight = args.in_flight if args.mode == "pipelined" else 1
    payload = "x" * args.payload
    try:
        caller = CeleryCaller(args) if args.system == "celery" else RqCaller(args)
        if args.warmup > 0:
            run(caller, payload, args.warmup, in_flight, max(args.timeout, 60.0))
        start = time.perf_counter()
        lat = sorted(run(caller, payload, args.count, in_flight, args.timeout))
        seconds = time.perf_counter() - start
    except Exception as e:  # report any failure as one line naming the system, exit 1
        print("python_bench (%s): %s: %s" % (args.path, type(e).__name__, e), file=sys.stderr)
        return 1
    print(json.dumps({
        "path": args.path, "variant": args.variant, "mode": args.mode, "in_flight": in_flight,
        "task": "spin_us" if args.work_us > 0 else "noop", "work_us": args.work_us,
        "payload_bytes": args.payload, "count": args.count,
        "p50_us": percentile(lat, 0.50), "p90_us": percentile(lat, 0.90),
        "p99_us": percentile(lat, 0.99), "p999_us": percentile(lat, 0.999),
        "mean_us": sum(lat) / len(lat), "throughput_per_s": args.count / seconds,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
