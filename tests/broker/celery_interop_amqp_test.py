#!/usr/bin/env python3
"""celery_interop_test.py's cases over RabbitMQ: an unchanged Python Celery 5.2 client against
the C++ worker (examples/celery_worker) on a RabbitMQ started on loopback for the test, results
through rpc:// (and through Redis in the broker-restart case). Plus what only RabbitMQ shows:
priorities on a queue the Python app declared with x-max-priority (no 406 from the worker's own
declarations), a killed worker's unacked task redelivered to a Python worker, malformed
messages published with py-amqp, a broker restart, and TLS (amqps://) with a CA file.

Usage: celery_interop_amqp_test.py PATH/TO/celery_worker PATH/TO/celery_client PATH/TO/brokers.sh
"""
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

import amqp
from celery import Celery

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import celery_interop_test as base  # noqa: E402


def start_rabbitmq(d, port=""):
    """Prints nothing; returns the port of a RabbitMQ of the test's own in `d`."""
    return subprocess.run([base.BROKERS_SH, "start", "rabbitmq", d, *([port] if port else [])],
                          check=True, capture_output=True, text=True).stdout.strip()


def amqp_url(port):
    return f"amqp://guest:guest@127.0.0.1:{port}//"


@contextlib.contextmanager
def rabbitmq_server(prefix):
    d = tempfile.mkdtemp(prefix=prefix)
    port = start_rabbitmq(d)
    try:
        yield amqp_url(port), port
    finally:
        subprocess.run([base.BROKERS_SH, "stop", d], check=False)


def channel(port):
    conn = amqp.Connection(host=f"127.0.0.1:{port}", userid="guest", password="guest",
                           virtual_host="/")
    conn.connect()
    return conn, conn.channel()


def queue_length(port, queue):
    conn, ch = channel(port)
    try:
        return ch.queue_declare(queue, passive=True).message_count
    finally:
        conn.close()


class AmqpInteropTest(base.CeleryInteropTest):
    BACKEND = "rpc://"

    @classmethod
    def start_broker(cls):
        cls.port = start_rabbitmq(cls.dir)
        return amqp_url(cls.port)

    def test_malformed_messages_are_dead_lettered_and_the_worker_goes_on(self):
        # A task first: the app declares its reply queue (named by its oid) when it sends one.
        self.assertEqual(self.app.send_task("tasks.add", args=[1, 1]).get(timeout=10), 2)
        reply_to = self.app.backend.oid
        conn, ch = channel(self.port)
        bad_id = str(uuid.uuid4())
        no_type_id = str(uuid.uuid4())
        try:
            def publish(body, content_type, task_id):
                props = {"application_headers": {"lang": "py", "task": "tasks.add",
                                                 "id": task_id},
                         "correlation_id": task_id, "reply_to": reply_to, "delivery_mode": 2}
                if content_type:
                    props["content_type"] = content_type
                    props["content_encoding"] = "utf-8"
                ch.basic_publish(amqp.Message(body, **props), exchange="", routing_key="celery")

            publish(b"this is not json", "application/json", str(uuid.uuid4()))
            # Two elements, and no content_type: each kills Python's own worker.
            publish(json.dumps([[1, 2], {}]).encode(), "application/json", bad_id)
            publish(json.dumps([[1, 2], {}, {}]).encode(), None, no_type_id)
        finally:
            conn.close()
        self.assertEqual(self.app.send_task("tasks.add", args=[20, 22]).get(timeout=10), 42)
        with self.assertRaises(ValueError) as ctx:
            self.app.AsyncResult(bad_id).get(timeout=5)
        self.assertIn("2 elements", str(ctx.exception))
        with self.assertRaises(ValueError) as ctx:
            self.app.AsyncResult(no_type_id).get(timeout=5)
        self.assertIn("content_type", str(ctx.exception))
        deadline = time.time() + 5
        while queue_length(self.port, "celery.dead") < 3 and time.time() < deadline:
            time.sleep(0.05)
        conn, ch = channel(self.port)
        try:
            dead = []
            while True:
                m = ch.basic_get("celery.dead", no_ack=True)
                if m is None:
                    break
                dead.append(json.loads(m.body))
        finally:
            conn.close()
        self.assertEqual(len(dead), 3, dead)
        self.assertTrue(any("2 elements" in d["reason"] for d in dead), dead)
        self.assertTrue(all(d["headers"]["task"] == "tasks.add" for d in dead), dead)

    def test_a_flushed_script_cache_is_survived(self):
        self.skipTest("Redis only: the worker pops with a Lua script there")

    def test_inspect_answers_amqp(self):
        stats = self.app.control.inspect(destination=[self.hostname], timeout=2).stats()
        broker = stats[self.hostname]["broker"]
        self.assertEqual((broker["transport"], broker["virtual_host"]), ("amqp", "/"))


class AmqpOwnBrokerTest(unittest.TestCase):
    """A RabbitMQ of its own per case, for what the shared one cannot show."""

    def test_cpp_client_against_a_python_worker(self):
        with rabbitmq_server("offload-celery-amqp-client-") as (url, port), \
                base.python_worker(url, "py-serve@localhost", backend="rpc://"):
            def client(*args):
                return base.run_client(url, *args, backend="rpc://")
            p = client("--task", "tasks.add", "--args", "[2, 3]", "--timeout-s", "30")
            self.assertEqual((p.returncode, p.stdout.strip()), (0, "5"), p.stderr)
            p = client("--task", "tasks.add", "--kwargs", '{"x": "a", "y": "b"}',
                       "--countdown", "0.3")
            self.assertEqual((p.returncode, p.stdout.strip()), (0, '"ab"'), p.stderr)
            p = client("--task", "tasks.fail", "--args", '["from python"]')
            self.assertEqual((p.returncode, p.stderr.strip()), (1, "ValueError: from python"))
            p = client("--task", "tasks.nope", "--timeout-s", "10")
            self.assertEqual(p.returncode, 1)
            self.assertIn("NotRegistered", p.stderr)

    def test_priorities_on_a_queue_the_app_declared(self):
        with rabbitmq_server("offload-celery-amqp-prio-") as (url, port):
            app = Celery("prio", broker=url, backend="rpc://")
            app.conf.task_queue_max_priority = 10
            # Queued before the worker starts: the broker hands over the highest first.
            results = [app.send_task("tasks.echo", args=[p], priority=p) for p in (0, 3, 9, 6)]
            events = base.EventCapture(app).start()
            seen = events.seen
            # No --queue-max-priority: the worker finds the queue declared and leaves it be.
            w = base.start_worker(url, f"cpp-prio-{uuid.uuid4().hex[:8]}@localhost",
                                  ["--concurrency", "1"], backend="rpc://")
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
            received = sorted((e for e in seen if e["type"] == "task-received"),
                              key=lambda e: e["clock"])
            self.assertEqual([json.loads(e["args"])[0] for e in received], [9, 6, 3, 0])
            app.close()

    def test_python_worker_gets_what_a_killed_cpp_worker_held(self):
        with rabbitmq_server("offload-celery-amqp-kill-") as (url, port):
            app = Celery("kill", broker=url, backend="rpc://")
            name = f"cpp-kill-{uuid.uuid4().hex[:8]}@localhost"
            w = base.start_worker(url, name, backend="rpc://")
            r = app.send_task("tasks.sleep_ms", args=[2000])
            deadline = time.time() + 15
            held = False
            while not held and time.time() < deadline:
                active = app.control.inspect(destination=[name], timeout=0.5).active() or {}
                held = any(t["id"] == r.id for t in active.get(name, []))
            self.assertTrue(held, "the C++ worker never held the task")
            w.kill()
            w.wait()
            with base.python_worker(url, "py@localhost", backend="rpc://"):
                self.assertEqual(r.get(timeout=30), 2000)
            app.close()

    def test_broker_restart_loses_nothing(self):
        """RabbitMQ restarted (durable queue, persistent messages) while the worker holds tasks,
        has finished some and has more queued; results in Redis. Every task gets its result."""
        import redis
        d = tempfile.mkdtemp(prefix="offload-celery-amqp-restart-")
        with base.redis_server("offload-celery-amqp-restart-redis-") as backend:
            port = start_rabbitmq(d)
            url = amqp_url(port)
            try:
                app = Celery("restart", broker=url, backend=backend)
                ids = [app.send_task("tasks.sleep_ms", args=[400]).id for _ in range(24)]
                app.close()
                w = base.start_worker(url, f"cpp-restart-{uuid.uuid4().hex[:8]}@localhost",
                                      backend=backend)
                time.sleep(0.6)  # two done, two running, prefetched ones unacked, the rest queued
                subprocess.run([base.BROKERS_SH, "stop", d], check=True)
                time.sleep(1.0)
                start_rabbitmq(d, port)
                done = base.stored_successes(redis.Redis.from_url(backend), ids, 60)
                self.assertEqual(len(done), len(ids), "tasks without a result after the restart")
                self.assertEqual(set(done.values()), {400})
                self.assertIsNone(w.poll(), "the worker exited")
                deadline = time.time() + 10
                while queue_length(port, "celery") and time.time() < deadline:
                    time.sleep(0.1)
                self.assertEqual(queue_length(port, "celery"), 0)
                w.send_signal(signal.SIGTERM)
                self.assertEqual(w.wait(timeout=30), 0)
            finally:
                subprocess.run([base.BROKERS_SH, "stop", d], check=False)


class AmqpTlsTest(unittest.TestCase):
    """amqps:// to a TLS listener of a RabbitMQ started for the test (scripts/lib/brokers.sh
    with OFFLOAD_RABBITMQ_TLS=1: a CA and a certificate for localhost made on the spot)."""

    def test_worker_and_client_over_tls_and_a_wrong_ca_is_refused(self):
        d = tempfile.mkdtemp(prefix="offload-celery-amqp-tls-")
        env = dict(os.environ, OFFLOAD_RABBITMQ_TLS="1")
        port = subprocess.run([base.BROKERS_SH, "start", "rabbitmq", d], check=True,
                              capture_output=True, text=True, env=env).stdout.strip()
        try:
            with open(os.path.join(d, "tls_port")) as f:
                tls_url = f"amqps://guest:guest@localhost:{f.read().strip()}//"
            ca = os.path.join(d, "tls", "ca.pem")
            # A CA that did not sign the broker's certificate: refused at once, exit 1.
            other = os.path.join(d, "other")
            os.mkdir(other)
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                            "-keyout", os.path.join(other, "k"), "-out",
                            os.path.join(other, "ca.pem"), "-days", "1", "-subj", "/CN=other"],
                           check=True, capture_output=True)
            p = subprocess.run([base.WORKER_BIN, "--broker", tls_url, "--ca-file",
                                os.path.join(other, "ca.pem")],
                               capture_output=True, text=True, timeout=20)
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertIn("verification failed", p.stderr)

            name = f"cpp-tls-{uuid.uuid4().hex[:8]}@localhost"
            w = base.start_worker(tls_url, name, ["--ca-file", ca], backend="rpc://")
            try:
                app = Celery("tls", broker=amqp_url(port), backend="rpc://")
                deadline = time.time() + 20
                while time.time() < deadline:
                    if app.control.ping(destination=[name], timeout=0.5):
                        break
                stats = app.control.inspect(destination=[name], timeout=2).stats()[name]
                self.assertTrue(stats["broker"]["ssl"])
                self.assertEqual(app.send_task("tasks.add", args=[2, 3]).get(timeout=10), 5)
                app.close()
                p = subprocess.run([base.CLIENT_BIN, "--broker", tls_url, "--result-backend",
                                    "rpc://", "--ca-file", ca, "--task", "tasks.add",
                                    "--args", "[40, 2]"],
                                   capture_output=True, text=True, timeout=60)
                self.assertEqual((p.returncode, p.stdout.strip()), (0, "42"), p.stderr)
            finally:
                w.send_signal(signal.SIGTERM)
                self.assertEqual(w.wait(timeout=30), 0)
        finally:
            subprocess.run([base.BROKERS_SH, "stop", d], check=False)


if __name__ == "__main__":
    base.WORKER_BIN, base.CLIENT_BIN, base.BROKERS_SH = sys.argv[1], sys.argv[2], sys.argv[3]
    try:
        unittest.main(argv=sys.argv[:1], verbosity=2)
    finally:
        for name in base.WORKER_LOGS:
            with open(name) as f:
                sys.stderr.write(f"--- {name}\n{f.read()}")
            os.unlink(name)
