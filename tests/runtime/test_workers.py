"""``python -m edgepack.runtime`` as real processes: several workers on one port, restarts, clean stops."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from edgepack.deploy.local import free_port
from edgepack.profiling.procs import tree
from tests.project import SCORE_PY, expected, make_model

ROOT = Path(__file__).resolve().parents[2]


def _start(tmp_path: Path, script: str, **env: str) -> tuple[subprocess.Popen, str]:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "score.py").write_text(script)
    make_model(tmp_path / "model" / "model.onnx", seed=11)
    config = tmp_path / "runtime.json"
    config.write_text(json.dumps({"entry_script": str(src / "score.py"), "source_dir": str(src),
                                  "model_dir": str(tmp_path / "model"), "model": {"name": "m", "version": 1}}))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "edgepack.runtime", "--host", "127.0.0.1", "--port", str(port)],
                            env={**os.environ, "EDGEPACK_RUNTIME_CONFIG": str(config), "PYTHONPATH": str(ROOT), **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, f"http://127.0.0.1:{port}"


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError("never ready")


def _end(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        for pid in tree(proc.pid):
            os.kill(pid, signal.SIGKILL)
        proc.wait()
    proc.stdout.close()


def _workers(proc: subprocess.Popen) -> list[int]:
    return [pid for pid in tree(proc.pid) if pid != proc.pid]


def _settled(proc: subprocess.Popen, timeout: float = 20) -> list[int]:
    """The worker pids once there are two (a loaded machine may still be starting one)."""
    deadline = time.monotonic() + timeout
    while len(workers := _workers(proc)) != 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    return workers


def _log_so_far(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    proc.wait(20)
    return proc.stdout.read()


def test_workers_share_the_port_restart_after_a_crash_and_stop_together(tmp_path):
    proc, url = _start(tmp_path, SCORE_PY, EDGEPACK_PROCESSES="2")
    try:
        _wait_ready(url, proc)
        seen: set[int] = set()
        deadline = time.monotonic() + 30
        while seen != {0, 1} and time.monotonic() < deadline:  # a new connection each time: the kernel spreads them
            health = httpx.get(f"{url}/health", timeout=5)
            if health.status_code == 200:
                seen.add(health.json()["worker"])
        assert seen == {0, 1}
        data = [[1.0, 2.0, 3.0, 4.0]]
        answer = httpx.post(f"{url}/score", json={"data": data}, timeout=5).json()
        np.testing.assert_allclose(answer["result"], expected(tmp_path / "model" / "model.onnx", data), rtol=1e-5)
        first = _settled(proc)
        assert len(first) == 2, _log_so_far(proc)
        os.kill(first[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (len(_workers(proc)) != 2 or first[0] in _workers(proc)):
            time.sleep(0.1)
        replaced = _workers(proc)
        assert len(replaced) == 2 and first[0] not in replaced and first[1] in replaced
        _wait_ready(url, proc)
        # Served after the kill, so by a worker that will flush its access log when stopped.
        assert httpx.post(f"{url}/score", json={"data": data}, timeout=5).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert not any(Path(f"/proc/{pid}").exists() for pid in replaced)
        log = proc.stdout.read()
        assert re.search(r"worker [01] exited with code -9; starting it again", log)
        assert "POST /score 200" in log  # the workers flushed their access logs on the way out
    finally:
        _end(proc)


def test_a_worker_that_cannot_start_stops_the_server_with_its_code(tmp_path):
    broken = SCORE_PY.replace("def init():\n", "def init():\n    raise RuntimeError('no model for you')\n")
    proc, _ = _start(tmp_path, broken, EDGEPACK_PROCESSES="2")
    try:
        assert proc.wait(60) == 1
        assert "no model for you" in proc.stdout.read()
    finally:
        _end(proc)


def test_one_process_stops_cleanly_on_sigterm(tmp_path):
    proc, url = _start(tmp_path, SCORE_PY)
    try:
        _wait_ready(url, proc)
        assert httpx.post(f"{url}/score", json={"data": [[1.0, 2.0, 3.0, 4.0]]}, timeout=5).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert "POST /score 200" in proc.stdout.read()
    finally:
        _end(proc)
