"""Round trips through Celery or RQ as a Python caller sees them; prints one JSON object with the
same fields as broker_bench (C++).

  python_bench.py --system celery|rq [--redis-url URL] [--mode pingpong|pipelined]
                  [--in-flight 64] [--clients 1] [--work-us 0] [--count 500] [--warmup 20]
                  [--payload 100] [--timeout 30] [--events] --path NAME [--variant default]

Celery: task.apply_async(...).get(), broker and backend from OFFLOAD_CELERY_BROKER/_BACKEND.
--clients N splits the tasks in flight over N client processes started together (one Python
client cannot keep a fast worker busy); throughput is all their tasks over the time from the
first start to the last end, latencies are pooled.
--events (Celery, one client) also reads the worker's task events and reports the worker's own
time per task, task-received to task-succeeded (worker_p50_us ...): the worker has the message
in hand at the first, its result is stored at the second. The worker must send task events.
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


def run(caller, payload, count, in_flight, timeout, ids=None):
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
        if ids is not None:
            ids.append(handle.id)
    return latencies


class EventTimes:
    """Timestamps of task-received and task-succeeded by task id, read by a Celery event
    receiver on a thread of its own."""

    def __init__(self):
        import threading

        import celery_app

        self.received = {}
        self.succeeded = {}
        self._app = celery_app.app
        self._receiver = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._capture, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the event receiver did not start in 10 s")

    def _capture(self):
        with self._app.connection_for_read() as conn:
            self._receiver = self._app.events.Receiver(conn, handlers={
                "task-received": lambda e: self.received.__setitem__(e["uuid"], e["timestamp"]),
                "task-succeeded": lambda e: self.succeeded.__setitem__(e["uuid"], e["timestamp"]),
            })
            self._ready.set()
            self._receiver.capture(limit=None, timeout=None, wakeup=False)

    def worker_times_us(self, ids, timeout):
        """The worker's time for each id, waiting up to `timeout` s for the last events."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(i not in self.succeeded for i in ids):
            time.sleep(0.05)
        self._receiver.should_stop = True
        out = [(self.succeeded[i] - self.received[i]) * 1e6
               for i in ids if i in self.succeeded and i in self.received]
        if len(out) < 0.9 * len(ids):
            raise RuntimeError("task events came for %d of %d tasks (does the worker send task "
                               "events?)" % (len(out), len(ids)))
        return sorted(out)


def make_caller(args):
    return CeleryCaller(args) if args.system == "celery" else RqCaller(args)


def client_warmup(args):
    """Warm-up tasks of each of --clients."""
    return max(1, args.warmup // args.clients) if args.warmup > 0 else 0


def client_process(args, payload, count, in_flight, barrier, results):
    """One of --clients: warms up, starts with the others, sends `count` tasks."""
    try:
        caller = make_caller(args)
        if args.warmup > 0:
            run(caller, payload, client_warmup(args), in_flight, max(args.timeout, 60.0))
        barrier.wait(120)
        start = time.perf_counter()
        lat = run(caller, payload, count, in_flight, args.timeout)
        results.put((start, time.perf_counter(), lat, None))
    except Exception as e:  # reported by the parent
        results.put((0, 0, [], "%s: %s" % (type(e).__name__, e)))


def run_clients(args, payload, in_flight):
    """--clients processes together: (pooled latencies, seconds from first start to last end)."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    n = args.clients
    barrier = ctx.Barrier(n)
    results = ctx.Queue()
    procs = []
    for k in range(n):
        count = args.count // n + (1 if k < args.count % n else 0)
        flight = max(1, in_flight // n + (1 if k < in_flight % n else 0))
        procs.append(ctx.Process(target=client_process,
                                 args=(args, payload, count, flight, barrier, results)))
    for p in procs:
        p.start()
    got = [results.get(timeout=max(args.timeout, 60.0) + 180) for _ in procs]
    for p in procs:
        p.join(10)
    errors = [e for _, _, _, e in got if e]
    if errors:
        raise RuntimeError("client process failed: " + errors[0])
    lat = [x for _, _, part, _ in got for x in part]
    return lat, max(e for _, e, _, _ in got) - min(s for s, _, _, _ in got)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--system", choices=["celery", "rq"], required=True)
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument("--mode", choices=["pingpong", "pipelined"], default="pingpong")
    p.add_argument("--in-flight", type=int, default=64)
    p.add_argument("--clients", type=int, default=1)
    p.add_argument("--events", action="store_true")
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
    if args.clients < 1 or args.clients > in_flight:
        p.error("--clients must be in [1, tasks in flight]")
    if args.events and (args.system != "celery" or args.clients != 1):
        p.error("--events needs --system celery and one client")
    worker = None
    try:
        if args.clients > 1:
            lat, seconds = run_clients(args, payload, in_flight)
            lat.sort()
        else:
            caller = make_caller(args)
            events = EventTimes() if args.events else None
            if args.warmup > 0:
                run(caller, payload, args.warmup, in_flight, max(args.timeout, 60.0))
            ids = [] if events else None
            start = time.perf_counter()
            lat = sorted(run(caller, payload, args.count, in_flight, args.timeout, ids))
            seconds = time.perf_counter() - start
            if events:
                worker = events.worker_times_us(ids, 10.0)
    except Exception as e:  # report any failure as one line naming the system, exit 1
        print("python_bench (%s): %s: %s" % (args.path, type(e).__name__, e), file=sys.stderr)
        return 1
    row = {
        "path": args.path, "variant": args.variant, "mode": args.mode, "in_flight": in_flight,
        "clients": args.clients,
        "task": "spin_us" if args.work_us > 0 else "noop", "work_us": args.work_us,
        "payload_bytes": args.payload, "count": args.count,
        "p50_us": percentile(lat, 0.50), "p90_us": percentile(lat, 0.90),
        "p99_us": percentile(lat, 0.99), "p999_us": percentile(lat, 0.999),
        "mean_us": sum(lat) / len(lat), "throughput_per_s": args.count / seconds,
        # every task sent, warm-up included (what a worker's CPU time is divided by)
        "sent": args.count + (client_warmup(args) * args.clients if args.clients > 1
                              else max(args.warmup, 0)),
    }
    if worker:
        row.update({"worker_p50_us": percentile(worker, 0.50),
                    "worker_p99_us": percentile(worker, 0.99),
                    "worker_mean_us": sum(worker) / len(worker), "worker_count": len(worker)})
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
