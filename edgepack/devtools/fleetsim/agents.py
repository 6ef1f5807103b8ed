"""``python -m edgepack.devtools.fleetsim.agents``: one process running several device agents, each the real
``device_agents.Agent`` with a module identity, state folder and hub connection of its own (the entry script is
loaded once per agent, so their models and swaps are independent). The plan comes on stdin as JSON (it holds the
identities' connection strings, so it is never written to disk); the process stops on SIGTERM or when the
simulator that started it is gone.

A ``failing`` agent simulates a device on which new models break: once it serves any model but the one it started
with, every input it scores answers a 500 error (as a device whose accelerator driver rejects the model would).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from edgepack.runtime.edge import EdgeSettings
from edgepack.runtime.response import Response, error_response
from edgepack.runtime.scoring import Runtime, load_runtime

from device_agents.agent import Agent, make_client
from device_agents.queues import Queues

log = logging.getLogger("edgepack.fleetsim")


class _Broken:
    """A runtime whose every answer is the simulated fault (batching off, so each input goes through score)."""

    run_batch = None

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def __getattr__(self, name: str) -> Any:
        return getattr(self._runtime, name)

    def score(self, body: bytes, content_type: str | None = None) -> Response:
        return error_response(500, "simulated device fault: this device cannot run the new model")


class FailingAgent(Agent):
    """An agent whose device breaks every model but the one it started with."""

    def _use(self, runtime: Runtime) -> None:
        started_with = self.models.baked.sha256
        model = runtime.config.model or {}
        super()._use(runtime if model.get("sha256") == started_with else _Broken(runtime))  # type: ignore[arg-type]


def start_agent(plan: dict[str, Any], entry: dict[str, Any]) -> Agent:
    """Start one agent of the plan."""
    runtime = load_runtime(plan["runtime_config"], start=False)
    os.makedirs(entry["state_dir"], exist_ok=True)
    settings = EdgeSettings.from_env(runtime.config.module_input, runtime.config.module_output, {
        "EDGEPACK_IOTHUB_CONNECTION_STRING": entry["connection_string"], "EDGEPACK_IOTHUB_CA_FILE": plan["ca_file"],
        "EDGEPACK_STATE_DIR": entry["state_dir"], "EDGEPACK_REPORT_SECONDS": str(plan["report_seconds"]),
        "EDGEPACK_TWIN_TIMEOUT_SECONDS": str(plan.get("twin_timeout", 10))})
    kind = FailingAgent if entry.get("failing") else Agent
    agent = kind(runtime, lambda: make_client(settings), Queues(os.path.join(entry["state_dir"], "queues.db")),
                 settings)
    agent.start()
    return agent


def run(plan: dict[str, Any], stop: threading.Event, parent: int) -> None:
    """Start the plan's agents, each after its ``start_after`` seconds, and run them until ``stop``."""
    agents: list[Agent] = []
    began = time.monotonic()
    for entry in sorted(plan["agents"], key=lambda e: e.get("start_after", 0)):
        while not stop.is_set() and time.monotonic() - began < entry.get("start_after", 0):
            stop.wait(0.5)
            if os.getppid() != parent:
                stop.set()
        if stop.is_set():
            break
        try:
            agents.append(start_agent(plan, entry))
        except Exception as exc:  # noqa: BLE001 - one device that cannot start is logged, the others run
            log.error("device %s did not start: %s: %s", entry["device"], type(exc).__name__, exc)
    while not stop.wait(1.0):
        if os.getppid() != parent:
            break
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda a: a.stop(timeout=5.0), agents))


def main() -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    plan = json.load(sys.stdin)
    parent = int(plan.get("parent") or os.getppid())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run(plan, stop, parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
