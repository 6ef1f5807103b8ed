"""The local Service Bus trigger with the real azure-servicebus client against the local test broker."""

from __future__ import annotations

import dataclasses
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
from triggers.bindings import TriggerError
from triggers.servicebus import ServiceBusTrigger, timespan_seconds

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def broker(start_broker):
    return start_broker(["requests:3:30", "scores"])


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


def _drain(broker, queue: str, want: int | set, timeout: float = 60.0, **kwargs) -> list:
    """Receive until ``want`` messages came, or until every correlation id of the set ``want`` was seen."""
    out, deadline = [], time.monotonic() + timeout

    def done() -> bool:
        return want <= {m.correlation_id for m in out} if isinstance(want, set) else len(out) >= want

    with ServiceBusClient.from_connection_string(broker.connection_string()) as client:
        with client.get_queue_receiver(queue, **kwargs) as receiver:
            while not done() and time.monotonic() < deadline:
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


def test_killing_the_host_mid_batch_loses_nothing(start_broker, app, tmp_path):
    broker = start_broker(["requests:3:1", "scores"])  # the dead host's locks expire after 1 s
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
    wanted = {f"req-{i}" for i in range(300)}
    try:  # at-least-once: a message scored but not completed when the host died is scored again
        outputs += _drain(broker, "scores", wanted - {m.correlation_id for m in outputs}, timeout=90)
    finally:
        second.terminate()
        second.wait(10)
    assert {m.correlation_id for m in outputs} == wanted


def test_a_function_slower_than_the_lock_is_completed_once(start_broker, app):
    broker = start_broker(["requests:5:1", "scores"])  # a 1 s lock; each call takes 2.5 s
    fn, calls = load_app(str(app["root"]))[0], []

    def slow(**kwargs):
        calls.append(kwargs["msg"].message_id)
        time.sleep(2.5)
        return fn.call(**kwargs)

    trigger = ServiceBusTrigger(dataclasses.replace(fn, call=slow), batch=2,
                                env={"AzureWebJobsServiceBus": broker.connection_string()})
    stop = threading.Event()
    thread = threading.Thread(target=trigger.run, args=(stop,), daemon=True)
    thread.start()
    try:
        _send(broker, [{"data": [[float(i), 0.0, 0.0, 0.0]]} for i in range(2)])
        outputs = _drain(broker, "scores", 3, timeout=10)  # waits past the two outputs for a redelivery
    finally:
        stop.set()
        thread.join(10)
    assert calls == ["req-0", "req-1"]  # a lost lock would have given a message back for a second call
    assert sorted(m.correlation_id for m in outputs) == ["req-0", "req-1"]
    assert _drain(broker, "requests", 1, timeout=2, sub_queue="deadletter") == []


@pytest.mark.parametrize("value, seconds", [("00:05:00", 300.0), ("1.02:00:30.5", 93630.5), (" 00:00:01 ", 1.0)])
def test_host_json_timespans(value, seconds):
    assert timespan_seconds(value) == seconds


@pytest.mark.parametrize("value", ["5m", "00:05", "", 300, None])
def test_a_bad_timespan_is_named(value):
    with pytest.raises(TriggerError, match="not a TimeSpan"):
        timespan_seconds(value)
