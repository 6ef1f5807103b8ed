"""Several server processes on one port (``EDGEPACK_PROCESSES``): Python runs one thread of Python at a time,
so a CPU-bound entry script scales across cores only with processes, as Azure ML's ``WORKER_COUNT`` does.

The supervisor starts N copies of the server, each loading the entry script itself and listening on the same
port with ``SO_REUSEPORT`` (the kernel spreads connections over them). A worker that crashes is started again,
after a pause that grows while it keeps crashing; a worker that exits because it cannot start at all (bad
config, init() failed) stops the whole server with its exit code, since its siblings would fail the same way.
SIGTERM and SIGINT stop every worker and then the supervisor.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

log = logging.getLogger("edgepack.runtime.workers")
WORKER_ENV = "EDGEPACK_WORKER_INDEX"
CANNOT_START = (1, 2)  # init() failed; bad runtime config or keys (see edgepack.runtime.__main__)


def supervise(count: int, argv: list[str], module: str = "edgepack.runtime") -> int:
    """Run ``count`` workers of ``python -m MODULE argv`` until told to stop; returns the exit code."""
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    workers: dict[int, subprocess.Popen] = {}
    failures = [0] * count
    not_before = [0.0] * count

    started = [0.0] * count

    def start(index: int) -> None:
        env = {**os.environ, WORKER_ENV: str(index), "EDGEPACK_REUSE_PORT": "1"}
        workers[index] = subprocess.Popen([sys.executable, "-m", module, *argv], env=env)
        started[index] = time.monotonic()

    for index in range(count):
        start(index)
    log.info("started %d worker processes", count)
    try:
        while not stopping:
            time.sleep(0.1)
            for index, proc in list(workers.items()):
                status = proc.poll()
                if status is None:
                    continue
                if status in CANNOT_START:
                    log.error("worker %d cannot start (exit code %d); stopping the server", index, status)
                    return status
                del workers[index]
                # A worker that ran for a minute before dying starts again at once; one that keeps dying waits.
                failures[index] = 1 if time.monotonic() - started[index] > 60 else failures[index] + 1
                delay = min(30.0, 0.5 * 2 ** (failures[index] - 1))
                not_before[index] = time.monotonic() + delay
                log.warning("worker %d exited with code %s; starting it again in %.1fs", index, status, delay)
            for index in range(count):
                if index not in workers and time.monotonic() >= not_before[index]:
                    start(index)
    finally:
        for proc in workers.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 10
        for proc in workers.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0
