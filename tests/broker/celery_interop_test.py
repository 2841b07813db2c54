#!/usr/bin/env python3
"""An unchanged Python Celery 5.2 client against the C++ worker (examples/celery_worker) over a
Redis started on loopback for the test: results, failures, retries, countdown, expiry,
revocation, unknown tasks, malformed messages, remote control, events, and restore after the
worker is killed.

Also the C++ client (examples/celery_client) against a Python Celery worker and against the C++
worker.

Usage: celery_interop_test.py PATH/TO/celery_worker PATH/TO/celery_client PATH/TO/brokers.sh
"""
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid

from celery import Celery
from celery.exceptions import NotRegistered, TaskRevokedError

WORKER_BIN = None
CLIENT_BIN = None
BROKERS_SH = None


@contextlib.contextmanager
def redis_server(prefix):
    """A Redis of the test's own on loopback (scripts/lib/brokers.sh); yields its URL."""
    d = tempfile.mkdtemp(prefix=prefix)
    port = subprocess.run([BROKERS_SH, "start", "redis", d], check=True,
                          capture_output=True, text=True).stdout.strip()
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        subprocess.run([BROKERS_SH, "stop", d], check=False)


def run_client(url, *args, backend=None):
    return subprocess.run([CLIENT_BIN, "--broker", url, "--result-backend", backend or url, *args],
                          capture_output=True, text=True, timeout=60)


def start_worker(url, hostname, extra=(), backend=None):
    """The worker's stderr goes to a file (a pipe nobody reads would block it), printed at exit.
    `backend`: the result backend's URL; None: the broker's."""
    log = tempfile.NamedTemporaryFile(prefix="celery_worker-", suffix=".log", delete=False)
    WORKER_LOGS.append(log.name)
    return subprocess.Popen([WORKER_BIN, "--broker", url, "--result-backend", backend or url,
                             "--hostname", hostname, "--concurrency", "2", *extra],
                            stderr=log)


WORKER_LOGS = []


class CeleryInteropTest(unittest.TestCase):
    """The broker and backend are Redis here; celery_interop_amqp_test.py runs the same cases
    over RabbitMQ with rpc:// by overriding start_broker() and BACKEND."""
    BACKEND = None  # the result backend's URL; None: the broker's

    @classmethod
    def start_broker(cls):
        port = subprocess.run([BROKERS_SH, "start", "redis", cls.dir], check=True,
                              capture_output=True, text=True).stdout.strip()
        return f"redis://127.0.0.1:{port}/0"

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="offload-celery-")
        cls.url = cls.start_broker()
        cls.backend = cls.BACKEND or cls.url
        cls.hostname = f"cpp-test-{uuid.uuid4().hex[:8]}@localhost"
        cls.worker = start_worker(cls.url, cls.hostname, backend=cls.backend)
        cls.app = Celery("interop", broker=cls.url, backend=cls.backend)
        cls.app.conf.broker_connection_retry_on_startup = False
        # The worker is up once it answers a ping.
        deadline = time.time() + 20
        while time.time() < deadline:
            if cls.app.control.ping(destination=[cls.hostname], timeout=0.5):
                return
        raise RuntimeError("celery_worker did not answer ping within 20 s")

    @classmethod
    def tearDownClass(cls):
        if cls.worker.poll() is None:
            cls.worker.send_signal(signal.SIGTERM)
            cls.worker.wait(timeout=30)
        subprocess.run([BROKERS_SH, "stop", cls.dir], check=False)

    def redis(self):
        import redis
        return redis.Redis.from_url(self.url)

    def test_add_with_args_and_kwargs(self):
        self.assertEqual(self.app.send_task("tasks.add", args=[2, 3]).get(timeout=10), 5)
        self.assertEqual(self.app.send_task("tasks.add", kwargs={"x": 4, "y": 5}).get(timeout=10), 9)
        self.assertEqual(self.app.send_task("tasks.add", args=[1], kwargs={"y": 2}).get(timeout=10), 3)

    def test_echo_returns_the_json_value(self):
        v = {"a": [1, 2.5, None, True], "b": "ünïcode"}
        self.assertEqual(self.app.send_task("tasks.echo", args=[v]).get(timeout=10), v)

    def test_failure_reraises_value_error(self):
        r = self.app.send_task("tasks.fail", args=["broken on purpose"])
        with self.assertRaises(ValueError) as ctx:
            r.get(timeout=10)
        self.assertEqual(str(ctx.exception), "broken on purpose")
        self.assertEqual(r.state, "FAILURE")

    def test_wrong_argument_types_are_a_type_error(self):
        with self.assertRaises(TypeError) as ctx:
            self.app.send_task("tasks.sleep_ms", args=["ten"]).get(timeout=10)
        self.assertIn("'ms'", str(ctx.exception))
        with self.assertRaises(TypeError):
            self.app.send_task("tasks.add", args=[1, 2, 3]).get(timeout=10)

    def test_retry_republishes_until_success(self):
        r = self.app.send_task("tasks.retry_me", args=[2])
        self.assertEqual(r.get(timeout=20), 3)

    def test_countdown_delays_the_task(self):
        t0 = time.time()
        r = self.app.send_task("tasks.add", args=[1, 1], countdown=1.0)
        self.assertEqual(r.get(timeout=10), 2)
        self.assertGreaterEqual(time.time() - t0, 0.95)

    def test_expired_task_is_revoked(self):
        r = self.app.send_task("tasks.add", args=[1, 1], countdown=1.5, expires=0.5)
        with self.assertRaises(TaskRevokedError):
            r.get(timeout=10)
        self.assertEqual(r.state, "REVOKED")

    def test_revoke_of_a_waiting_task(self):
        r = self.app.send_task("tasks.add", args=[1, 1], countdown=2)
        time.sleep(0.3)
        self.app.control.revoke(r.id)
        with self.assertRaises(TaskRevokedError):
            r.get(timeout=10)

    def test_hard_time_limit_is_time_limit_exceeded(self):
        from billiard.exceptions import TimeLimitExceeded
        t0 = time.time()
        r = self.app.send_task("tasks.sleep_ms", args=[3000], time_limit=0.5)
        with self.assertRaises(TimeLimitExceeded):
            r.get(timeout=10)
        self.assertLess(time.time() - t0, 2.5)

    def test_soft_time_limit_stops_the_task_early(self):
        # sleep_ms's sleep ends early when its stop is requested; it returns what it was asked.
        t0 = time.time()
        r = self.app.send_task("tasks.sleep_ms", args=[3000], soft_time_limit=0.3)
        self.assertEqual(r.get(timeout=10), 3000)
        self.assertLess(time.time() - t0, 2.5)

    def test_unknown_task_is_not_registered(self):
        with self.assertRaises(NotRegistered):
            self.app.send_task("tasks.does_not_exist", args=[1]).get(timeout=10)

    def test_sleeping_tasks_do_not_hold_workers(self):
        # Two executor workers, eight sleeps: more than two start before the first one ends (in
        # the worker's own event order), whatever the machine's speed (sanitizer builds too).
        events = EventCapture(self.app).start()
        try:
            rs = [self.app.send_task("tasks.sleep_ms", args=[1000]) for _ in range(8)]
            self.assertEqual([r.get(timeout=30) for r in rs], [1000] * 8)
            ids = {r.id for r in rs}
            deadline = time.time() + 5
            while (sum(e["type"] == "task-succeeded" and e["uuid"] in ids for e in events.seen)
                   < 8 and time.time() < deadline):
                time.sleep(0.05)
        finally:
            events.stop()
        mine = [e for e in events.seen if e.get("uuid") in ids]
        first_end = min(e["clock"] for e in mine if e["type"] == "task-succeeded")
        started = sum(e["type"] == "task-started" and e["clock"] < first_end for e in mine)
        self.assertGreater(started, 2, mine)

    def test_malformed_messages_are_dead_lettered_and_the_worker_goes_on(self):
        r = self.redis()
        r.lpush("celery", b"this is not json")
        body = json.dumps([[1, 2], {}]).encode()  # two elements: kills Python's own worker
        import base64
        bad_id = str(uuid.uuid4())
        env = {"body": base64.b64encode(body).decode(), "content-encoding": "utf-8",
               "content-type": "application/json",
               "headers": {"lang": "py", "task": "tasks.add", "id": bad_id},
               "properties": {"correlation_id": bad_id, "delivery_mode": 2,
                              "delivery_info": {"exchange": "", "routing_key": "celery"},
                              "priority": 0, "body_encoding": "base64",
                              "delivery_tag": str(uuid.uuid4())}}
        r.lpush("celery", json.dumps(env))
        self.assertEqual(self.app.send_task("tasks.add", args=[20, 22]).get(timeout=10), 42)
        deadline = time.time() + 5
        while r.llen("celery.dead") < 2 and time.time() < deadline:
            time.sleep(0.05)
        dead = [json.loads(x) for x in r.lrange("celery.dead", 0, -1)]
        self.assertEqual(len(dead), 2, dead)
        self.assertTrue(any("2 elements" in d["reason"] for d in dead), dead)
        with self.assertRaises(ValueError) as ctx:
            self.app.AsyncResult(bad_id).get(timeout=5)
        self.assertIn("2 elements", str(ctx.exception))

    def test_cpp_client_against_the_cpp_worker(self):
        b = self.backend
        p = run_client(self.url, "--task", "tasks.add", "--kwargs", '{"x": 40, "y": 2}', backend=b)
        self.assertEqual((p.returncode, p.stdout.strip()), (0, "42"), p.stderr)
        p = run_client(self.url, "--task", "tasks.fail", "--args", '["no"]', backend=b)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(p.stderr.strip(), "ValueError: no")
        p = run_client(self.url, "--task", "tasks.add", "--args", "[1]", "--countdown", "0.5",
                       backend=b)
        self.assertEqual(p.returncode, 1)
        self.assertIn("TypeError", p.stderr)

    def test_inspect_answers(self):
        i = self.app.control.inspect(destination=[self.hostname], timeout=2)
        self.assertEqual(i.ping(), {self.hostname: {"ok": "pong"}})
        self.assertIn("tasks.add", i.registered()[self.hostname])
        self.assertEqual(i.active_queues()[self.hostname][0]["name"], "celery")
        self.assertIn("total", i.stats()[self.hostname])
        self.assertIsInstance(i.active()[self.hostname], list)

    def test_a_flushed_script_cache_is_survived(self):
        # The worker pops with EVALSHA: after SCRIPT FLUSH (or a server that lost its scripts)
        # it loads the script again and goes on.
        self.redis().script_flush()
        self.assertEqual(self.app.send_task("tasks.add", args=[20, 22]).get(timeout=10), 42)

    def test_events_show_the_worker_and_its_tasks(self):
        state = self.app.events.State()
        seen = []

        def on_event(e):
            state.event(e)
            seen.append(e["type"])

        def receive():
            with self.app.connection() as conn:
                recv = self.app.events.Receiver(conn, handlers={"*": on_event})
                try:
                    recv.capture(limit=None, timeout=5, wakeup=True)
                except Exception:  # the timeout ends the capture
                    pass

        t = threading.Thread(target=receive, daemon=True)
        t.start()
        time.sleep(1.0)
        r = self.app.send_task("tasks.add", args=[3, 4])
        self.assertEqual(r.get(timeout=10), 7)
        t.join(timeout=10)
        self.assertIn("worker-heartbeat", seen)
        for kind in ("task-received", "task-started", "task-succeeded"):
            self.assertIn(kind, seen)
        self.assertTrue(state.workers[self.hostname].alive)
        self.assertEqual(state.tasks[r.id].state, "SUCCESS")
        self.assertEqual(state.tasks[r.id].name, "tasks.add")


class EventCapture:
    """Every event of `app`'s broker in `seen`, from one receiver on a thread of its own, from
    start() (subscribed when it returns) until stop()."""

    def __init__(self, app, on_event=None):
        self.seen = []
        self._app = app
        self._on_event = on_event
        self._recv = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _handle(self, e):
        self.seen.append(e)
        if self._on_event:
            self._on_event(e)

    def _run(self):
        with self._app.connection() as conn:
            self._recv = self._app.events.Receiver(conn, handlers={"*": self._handle})
            self._ready.set()
            self._recv.capture(limit=None, timeout=None, wakeup=True)

    def start(self):
        self._thread.start()
        self._ready.wait(10)
        time.sleep(1.0)  # the subscription is made inside capture(): let it settle
        return self

    def stop(self):
        if self._recv is not None:
            self._recv.should_stop = True
        self._thread.join(timeout=5)

    def types(self):
        return {e["type"] for e in self.seen}


class PriorityAndTaskEventsTest(unittest.TestCase):
    """A worker of its own on a Redis of its own, for what the shared one cannot show."""

    def test_priorities_are_taken_highest_first(self):
        with redis_server("offload-celery-prio-") as url:
            app = Celery("prio", broker=url, backend=url)
            # Queued before the worker starts: it takes them in one pop, bucket 0 first.
            results = [app.send_task("tasks.echo", args=[p], priority=p) for p in (9, 0, 6, 3)]
            events = EventCapture(app).start()
            seen = events.seen
            w = start_worker(url, f"cpp-prio-{uuid.uuid4().hex[:8]}@localhost",
                             ["--concurrency", "1"])
            try:
                self.assertEqual(sorted(r.get(timeout=20) for r in results), [0, 3, 6, 9])
                deadline = time.time() + 5
                while (sum(e["type"] == "task-received" for e in seen) < 4
                       and time.time() < deadline):
                    time.sleep(0.05)
            finally:
                events.stop()
                w.send_signal(signal.SIGTERM)
                self.assertEqual(w.wait(timeout=30), 0)
            for r in results:
                r.forget()
            del results
            received = sorted((e for e in seen if e["type"] == "task-received"),
                              key=lambda e: e["clock"])
            self.assertEqual([json.loads(e["args"])[0] for e in received], [0, 3, 6, 9])
            app.close()

    def test_task_events_off_then_enabled_and_sent_after_the_result_is_stored(self):
        import redis
        with redis_server("offload-celery-events-") as url:
            app = Celery("events", broker=url, backend=url)
            red = redis.Redis.from_url(url)
            name = f"cpp-events-{uuid.uuid4().hex[:8]}@localhost"
            stored_at_success = {}

            def on_event(e):
                if e["type"] == "task-succeeded":
                    stored_at_success[e["uuid"]] = red.exists("celery-task-meta-" + e["uuid"])

            events = EventCapture(app, on_event).start()
            seen = events.seen
            w = start_worker(url, name, ["--without-task-events"])
            try:
                self.assertEqual(app.send_task("tasks.add", args=[1, 2]).get(timeout=20), 3)
                time.sleep(2.5)  # a heartbeat (every 2 s) comes meanwhile
                types = events.types()
                self.assertTrue({"worker-online", "worker-heartbeat"} & types, types)
                self.assertFalse({t for t in types if t.startswith("task-")}, types)

                app.control.enable_events(destination=[name])
                r = app.send_task("tasks.add", args=[2, 3])
                self.assertEqual(r.get(timeout=20), 5)
                deadline = time.time() + 5
                while r.id not in stored_at_success and time.time() < deadline:
                    time.sleep(0.05)
                # The result was in Redis when its task-succeeded event came.
                self.assertEqual(stored_at_success.get(r.id), 1)
                mine = {e["type"]: e for e in seen if e.get("uuid") == r.id}
                self.assertLessEqual(mine["task-received"]["timestamp"],
                                     mine["task-succeeded"]["timestamp"])
                r.forget()
                del r
            finally:
                events.stop()
                w.send_signal(signal.SIGTERM)
                self.assertEqual(w.wait(timeout=30), 0)
            app.close()


class BrokerRestartTest(unittest.TestCase):
    """Redis restarted (with an append-only file, so it keeps what it had) while the worker holds
    tasks, has finished some and has more queued: the worker reconnects and every task gets its
    result; nothing acked late is lost."""

    def test_worker_reconnects_and_every_task_completes(self):
        import redis
        d = tempfile.mkdtemp(prefix="offload-celery-restart-")
        env = dict(os.environ, OFFLOAD_REDIS_PERSIST="1")

        def start(port=""):
            return subprocess.run([BROKERS_SH, "start", "redis", d, *([port] if port else [])],
                                  check=True, capture_output=True, text=True,
                                  env=env).stdout.strip()

        port = start()
        url = f"redis://127.0.0.1:{port}/0"
        try:
            app = Celery("restart", broker=url, backend=url)
            ids = [app.send_task("tasks.sleep_ms", args=[150]).id for _ in range(16)]
            app.close()
            w = start_worker(url, f"cpp-restart-{uuid.uuid4().hex[:8]}@localhost")
            time.sleep(0.5)  # some done, two running, some prefetched, the rest queued
            subprocess.run([BROKERS_SH, "stop", d], check=True)
            time.sleep(1.0)  # the worker sees the broker gone meanwhile
            start(port)
            red = redis.Redis.from_url(url)
            done = stored_successes(red, ids, 60)
            self.assertEqual(len(done), len(ids), "tasks without a result after the restart")
            self.assertEqual(set(done.values()), {150})
            self.assertIsNone(w.poll(), "the worker exited")
            deadline = time.time() + 5
            while red.hlen("unacked") and time.time() < deadline:
                time.sleep(0.05)
            self.assertEqual(red.hlen("unacked"), 0)
            w.send_signal(signal.SIGTERM)
            self.assertEqual(w.wait(timeout=30), 0)
        finally:
            subprocess.run([BROKERS_SH, "stop", d], check=False)


class RestoreAfterKillTest(unittest.TestCase):
    """A worker killed with SIGKILL while it holds a task: the worker started again under the
    same name restores the task from `unacked` and runs it; nothing is lost."""

    def test_killed_worker_task_is_run_after_restart(self):
        with redis_server("offload-celery-kill-") as url:
            app = Celery("kill", broker=url, backend=url)
            name = f"cpp-kill-{uuid.uuid4().hex[:8]}@localhost"
            w = start_worker(url, name)
            r = app.send_task("tasks.sleep_ms", args=[3000])
            red = kill_while_holding(self, url, w)
            self.assertEqual(red.hlen("unacked"), 1)  # still recorded, not lost
            w = start_worker(url, name)
            try:
                self.assertEqual(r.get(timeout=20), 3000)
                # The ack follows the result in the same pipeline: it may land a moment later.
                deadline = time.time() + 5
                while red.hlen("unacked") and time.time() < deadline:
                    time.sleep(0.02)
                self.assertEqual(red.hlen("unacked"), 0)
            finally:
                w.send_signal(signal.SIGTERM)
                self.assertEqual(w.wait(timeout=30), 0)
            r.forget()
            del r
            app.close()

    def test_python_worker_restores_what_a_killed_cpp_worker_held(self):
        with redis_server("offload-celery-py-") as url:
            app = Celery("kill2", broker=url, backend=url)
            w = start_worker(url, f"cpp-kill-{uuid.uuid4().hex[:8]}@localhost")
            r = app.send_task("tasks.sleep_ms", args=[2000])
            kill_while_holding(self, url, w)
            time.sleep(1.2)  # past the Python side's visibility timeout of 1 s
            with python_worker(url, "py@localhost"):
                self.assertEqual(r.get(timeout=30), 2000)
                r.forget()
                del r
                app.close()


def stored_successes(red, ids, timeout_s):
    """{id: result} of the tasks in `ids` whose SUCCESS is in the Redis backend `red`, once all
    are or `timeout_s` has passed."""
    deadline = time.time() + timeout_s
    done = {}
    while len(done) < len(ids) and time.time() < deadline:
        for i in ids:
            raw = red.get("celery-task-meta-" + i)
            if raw and json.loads(raw)["status"] == "SUCCESS":
                done[i] = json.loads(raw)["result"]
        time.sleep(0.2)
    return done


def kill_while_holding(test, url, worker):
    """Waits until `worker` holds one message (recorded in `unacked`), then SIGKILLs it."""
    import redis
    red = redis.Redis.from_url(url)
    deadline = time.time() + 10
    while red.hlen("unacked") == 0 and time.time() < deadline:
        time.sleep(0.02)
    test.assertEqual(red.hlen("unacked"), 1)
    worker.kill()
    worker.wait()
    return red


@contextlib.contextmanager
def python_worker(url, name, backend=None):
    """Celery's own worker (solo pool) serving tests/broker/celery_py_tasks.py."""
    env = dict(os.environ, OFFLOAD_CELERY_URL=url, OFFLOAD_CELERY_BACKEND=backend or url,
               PYTHONPATH=os.path.dirname(os.path.abspath(__file__)))
    py = subprocess.Popen([sys.executable, "-m", "celery", "-A", "celery_py_tasks", "worker",
                           "--pool=solo", "--without-mingle", "--without-gossip",
                           "-n", name, "-l", "warning"],
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield py
    finally:
        py.terminate()
        py.wait(timeout=30)


class CppClientPythonWorkerTest(unittest.TestCase):
    """The C++ client sends to a Python Celery worker and gets its results and failures."""

    def test_results_failures_and_bad_arguments(self):
        with redis_server("offload-celery-client-") as url, \
                python_worker(url, "py-serve@localhost"):
            p = run_client(url, "--task", "tasks.add", "--args", "[2, 3]", "--timeout-s", "30")
            self.assertEqual((p.returncode, p.stdout.strip()), (0, "5"), p.stderr)
            p = run_client(url, "--task", "tasks.add", "--kwargs", '{"x": "a", "y": "b"}',
                           "--countdown", "0.3")
            self.assertEqual((p.returncode, p.stdout.strip()), (0, '"ab"'), p.stderr)
            p = run_client(url, "--task", "tasks.fail", "--args", '["from python"]')
            self.assertEqual((p.returncode, p.stderr.strip()), (1, "ValueError: from python"))
            p = run_client(url, "--task", "tasks.nope", "--timeout-s", "10")
            self.assertEqual(p.returncode, 1)
            self.assertIn("NotRegistered", p.stderr)
            p = run_client(url, "--task", "tasks.add", "--args", "{}")
            self.assertEqual(p.returncode, 2)
            self.assertIn("--args must be a JSON array", p.stderr)
            p = run_client(url, "--task", "tasks.add", "--qeue", "other")
            self.assertEqual(p.returncode, 2)
            self.assertIn("unknown argument '--qeue'", p.stderr)


if __name__ == "__main__":
    WORKER_BIN, CLIENT_BIN, BROKERS_SH = sys.argv[1], sys.argv[2], sys.argv[3]
    try:
        unittest.main(argv=sys.argv[:1], verbosity=2)
    finally:
        for name in WORKER_LOGS:
            with open(name) as f:
                sys.stderr.write(f"--- {name}\n{f.read()}")
            os.unlink(name)
