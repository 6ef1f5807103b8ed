"""A Service Bus-triggered function image on the real engine, against the local test broker on loopback."""

from __future__ import annotations

import json

import numpy as np
import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage

from tests.project import expected, make_model, make_project, run_cli

pytestmark = pytest.mark.integration


def test_servicebus_function_in_a_container(tmp_path, edgepack_home, capsys, functions_base_image_ref,
                                            start_broker):
    # a 30 s lock: under load a short one runs out and at-least-once delivers some messages twice
    broker = start_broker(["requests:3:30", "scores"])
    config = make_project(tmp_path / "proj")
    model = make_model(tmp_path / "model.onnx", seed=71)
    assert run_cli(["model", "register", "m", str(model)], capsys)[0] == 0
    layout = tmp_path / "layout"
    code, out, err = run_cli(["package", "--model", "m", "--inference-config", str(config), "--target",
                              "functions-servicebus", "--input-queue", "%IN_QUEUE%", "--output-queue", "scores",
                              "--connection", "SB", "--base-image", functions_base_image_ref, "--output",
                              str(layout)], capsys)
    assert code == 0, err
    name = f"sb-{broker.port}"
    try:
        code, out, err = run_cli(["run", str(layout), "--host-network", "--name", name, "--env",
                                  f"SB={broker.connection_string()}", "--env", "IN_QUEUE=requests"], capsys)
        assert code == 0, err
        bodies = [{"data": [[float(i), 2.0, 0.0, -2.0]]} for i in range(50)]
        with ServiceBusClient.from_connection_string(broker.connection_string()) as client:
            with client.get_queue_sender("requests") as sender:
                sender.send_messages([ServiceBusMessage(json.dumps(b), message_id=f"r{i}")
                                      for i, b in enumerate(bodies)])
            got = {}
            with client.get_queue_receiver("scores") as receiver:
                for _ in range(60):
                    for m in receiver.receive_messages(max_message_count=50, max_wait_time=1):
                        got[m.correlation_id] = json.loads(str(m))
                        receiver.complete_message(m)
                    if len(got) == 50:
                        break
        assert sorted(got) == sorted(f"r{i}" for i in range(50))
        np.testing.assert_allclose(got["r9"]["result"], expected(model, bodies[9]["data"]), rtol=1e-5)
        code, logs, _ = run_cli(["logs", name], capsys)
        assert logs.count("invoked score on message") == 50
    finally:
        run_cli(["stop", name], capsys)
