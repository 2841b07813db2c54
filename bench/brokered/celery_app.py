"""Celery application for the benchmark, configured from the environment by scripts/bench:
OFFLOAD_CELERY_BROKER (redis://... or amqp://...) and OFFLOAD_CELERY_BACKEND (redis://... or
rpc://). Everything else is Celery's default ("as shipped")."""
import os

from celery import Celery

import bench_tasks

app = Celery(
    "offload_bench",
    broker=os.environ.get("OFFLOAD_CELERY_BROKER", "redis://127.0.0.1:6379/0"),
    backend=os.environ.get("OFFLOAD_CELERY_BACKEND", "redis://127.0.0.1:6379/0"),
)


@app.task(name="noop")
def noop(payload):
    return bench_tasks.noop(payload)


@app.task(name="spin_us")
def spin_us(us, payload):
    return bench_tasks.spin_us(us, payload)
