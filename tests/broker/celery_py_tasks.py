"""A Python Celery app with the same task names as examples/celery_worker, for the tests in which
a Python worker serves the C++ client or takes over what a C++ worker left
(celery_interop_test.py). The broker URL comes
from OFFLOAD_CELERY_URL, the result backend's from OFFLOAD_CELERY_BACKEND (default: the broker's);
the visibility timeout (Redis) is 1 s so that a restore happens at once."""
import os
import time

from celery import Celery

url = os.environ["OFFLOAD_CELERY_URL"]
app = Celery("celery_py_tasks", broker=url, backend=os.environ.get("OFFLOAD_CELERY_BACKEND", url))
app.conf.broker_transport_options = {"visibility_timeout": 1}
app.conf.worker_hijack_root_logger = False


@app.task(name="tasks.add")
def add(x, y):
    return x + y


@app.task(name="tasks.fail")
def fail(message):
    raise ValueError(message)


@app.task(name="tasks.sleep_ms")
def sleep_ms(ms):
    time.sleep(ms / 1000.0)
    return ms
