"""The benchmark's tasks for Celery and RQ: the same work as examples/celery_worker's noop and spin_us."""
import time


def noop(payload):
    """Returns at once; payload is the 100-byte body every path carries."""
    return "ok"


def spin_us(us, payload):
    """Burns `us` microseconds of CPU, like examples/celery_worker's spin_us."""
    end = time.perf_counter() + us / 1e6
    while time.perf_counter() < end:
        pass
    return "ok"
