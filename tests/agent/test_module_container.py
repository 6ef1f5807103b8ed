"""The iot-edge module image on the real engine: packaged by the CLI, run as a container against the local hub,
killed with SIGKILL while results wait in its outbox, started again on the same state volume."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid

import docker
import pytest

from tests.project import expected, make_model, make_project, run_cli

from device_agents.scoring import result_id

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),  # paho, as in test_agent_hub
]


def _outbox_depth(state) -> int:
    db = sqlite3.connect(f"file:{state / 'queues.db'}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    finally:
        db.close()


def _start(client, image, hub, state, name, **env):
    return client.containers.run(
        image, name=name, detach=True, network_mode="host",
        environment={"EDGEPACK_IOTHUB_CONNECTION_STRING": hub.connection_string,
                     "EDGEPACK_IOTHUB_CA_FILE": "/certs/ca.pem", "EDGEPACK_REPORT_SECONDS": "1", **env},
        volumes={str(state): {"bind": "/var/lib/edgepack", "mode": "rw"},
                 str(hub.certs.ca.parent): {"bind": "/certs", "mode": "ro"}})


def test_module_image_scores_and_loses_nothing_to_kill_9(tmp_path, edgepack_home, capsys, base_image_ref,
                                                        docker_daemon, hub):
    config = make_project(tmp_path / "proj")
    model = make_model(tmp_path / "model.onnx", seed=83)
    assert run_cli(["model", "register", "m", str(model)], capsys)[0] == 0
    layout = tmp_path / "layout"
    code, out, err = run_cli(["package", "--model", "m", "--inference-config", str(config), "--target", "iot-edge",
                              "--base-image", base_image_ref, "--output", str(layout)], capsys)
    assert code == 0, err
    client = docker.from_env()
    tag = f"edgepack.test/module:{uuid.uuid4().hex[:8]}"
    docker_daemon.load_layout(layout, tag)
    state = tmp_path / "state"
    state.mkdir()
    names = [f"module-{uuid.uuid4().hex[:8]}", f"module-{uuid.uuid4().hex[:8]}"]
    try:
        # one result in flight: the first module sends slower than it scores, so results pile up in its outbox
        first = _start(client, tag, hub, state, names[0], EDGEPACK_SEND_WINDOW="1")
        assert hub.responder.wait_for(lambda r: r.reported.get("edgepack", {}).get("status") == "running", 60), \
            first.logs().decode()[-2000:]
        rows = [[[float(i), 1.0, -1.0, 0.5]] for i in range(1000)]
        ids = [hub.responder.send_input("input1", json.dumps({"data": r})) for r in rows]
        deadline = time.monotonic() + 60
        while _outbox_depth(state) < 500 and time.monotonic() < deadline:
            time.sleep(0.05)
        hub.link.cut()
        time.sleep(1.0)
        queued = _outbox_depth(state)
        first.kill(signal="SIGKILL")
        first.wait(timeout=30)
        arrived_before = len(hub.responder.messages)
        second = _start(client, tag, hub, state, names[1])
        time.sleep(2.0)
        hub.link.restore()
        assert hub.responder.wait_for(lambda r: len({m.correlation_id for m in r.messages}) >= 1000, 120), \
            second.logs().decode()[-2000:]
        print(f"results queued at kill -9: {queued}; delivered before it: {arrived_before}")
        assert queued >= 500, f"only {queued} results were waiting when the module was killed"
        order = {mid: i for i, mid in enumerate(ids)}
        firsts = list(dict.fromkeys(m.correlation_id for m in hub.responder.messages))
        assert firsts == sorted(firsts, key=order.__getitem__), "results arrived out of order"
        assert set(firsts) == set(ids)
        by_id = {m.correlation_id: m for m in hub.responder.messages}
        assert by_id[ids[7]].message_id == result_id(ids[7])
        assert by_id[ids[999]].json()["result"][0] == pytest.approx(expected(model, rows[999])[0], rel=1e-5)
    finally:
        for name in names:
            try:
                client.containers.get(name).remove(force=True)
            except docker.errors.NotFound:
                pass
        client.images.remove(tag, force=True)
        client.close()
