"""The local Service Bus trigger with the real azure-servicebus client against the local test broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage

from edgepack.targets import parse_target
from tests.project import expected, make_function_app
from triggers.host import load_app
from triggers.servicebus import ServiceBusTrigger

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def broker(start_broker):
    return start_broker(["requests:3:1", "scores"])


@pytest.fixture
def app(tmp_path, monkeypatch):
    target = parse_target("functions-servicebus", input_queue="requests", output_queue="scores")
    root = tmp_path / "wwwroot"
    rc = make_function_app(tmp_path, root, target, seed=61)
    monkeypatch.setenv("EDGEPACK_RUNTIME_CONFIG", str(rc))
    return {"root": root, "rc": rc, "model": tmp_path / "model" / "model.onnx"}


def _send(broker, bodies: list) -> None:
    with ServiceBusClient.from_connection_string(broker.connection_string()) as client:
        with client.get_queue_sender("requests") as sender:
            for start in range(0, len(bodies), 50):
                sender.send_messages([ServiceBusMessage(json.dumps(b), message_id=f"req-{start + i}",
                                                        content_type="application/json")
                                      for i, b in enumerate(bodies[start:start + 50])])


def _drain(broker, queue: str, want: int, timeout: float = 60.0, **kwargs) -> list:
    out, deadline = [], time.monotonic() + timeout
    with ServiceBusClient.from_connection_string(broker.connection_string()) as client:
        with client.get_queue_receiver(queue, **kwargs) as receiver:
            while len(out) < want and time.monotonic() < deadline:
                for m in receiver.receive_messages(max_message_count=50, max_wait_time=1):
                    out.append(m)
                    receiver.complete_message(m)
    return out


def test_200_messages_give_200_outputs_and_a_failing_one_is_dead_lettered(broker, app):
    fn = load_app(str(app["root"]))[0]
    trigger = ServiceBusTrigger(fn, env={"AzureWebJobsServiceBus": broker.connection_string()})
    stop = threading.Event()
    thread = threading.Thread(target=trigger.run, args=(stop,), daemon=True)
    thread.start()
    try:
        bodies = [{"data": [[float(i), 1.0, -1.0, 0.5]]} for i in range(200)]
        _send(broker, bodies)
        outputs = _drain(broker, "scores", 200)
        by_request = {m.correlation_id: json.loads(str(m)) for m in outputs}
        assert len(outputs) == 200 and len(by_request) == 200  # none lost, none duplicated
        for i in (0, 57, 199):
            np.testing.assert_allclose(by_request[f"req-{i}"]["result"], expected(app["model"], bodies[i]["data"]),
                                       rtol=1e-5)
        _send(broker, ["not a scoring request"])
        dead = _drain(broker, "requests", 1, sub_queue="deadletter")
        assert dead[0].dead_letter_reason == "MaxDeliveryCountExceeded" and dead[0].delivery_count == 3
    finally:
        stop.set()
        thread.join(10)


def test_killing_the_host_mid_batch_loses_nothing(broker, app, tmp_path):
    env = {**os.environ, "AzureWebJobsServiceBus": broker.connection_string(), "EDGEPACK_RUNTIME_CONFIG":
           str(app["rc"]), "EDGEPACK_PORT": "0", "PYTHONPATH": ROOT}

    def host() -> subprocess.Popen:
        with open(tmp_path / "host.log", "ab") as log:  # the child keeps its own descriptor
            return subprocess.Popen([sys.executable, "-m", "triggers", "--script-root", str(app["root"])],
                                    env=env, stdout=subprocess.DEVNULL, stderr=log)

    _send(broker, [{"data": [[float(i), 0.0, 0.0, 0.0]]} for i in range(300)])
    first = host()
    outputs = _drain(broker, "scores", 40, timeout=60)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    second = host()
    try:
        outputs += _drain(broker, "scores", 300 - len(outputs), timeout=90)
    finally:
        second.terminate()
        second.wait(10)
    assert {m.correlation_id for m in outputs} == {f"req-{i}" for i in range(300)}
