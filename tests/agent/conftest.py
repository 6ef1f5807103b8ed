"""The local hub's device side for agent tests: mosquitto over TLS (on a port of its own), a link proxy on
127.0.0.1:8883 (the port the device SDK always uses) that tests cut and restore, and the hub responder."""

from __future__ import annotations

import base64
import gc
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgepack.devtools.iothub.broker import Broker, BrokerError
from edgepack.devtools.iothub.certs import HubCertificates, ensure_certificates
from edgepack.devtools.iothub.linkproxy import LinkProxy
from edgepack.devtools.iothub.responder import HubResponder
from edgepack.devtools.projects import SCORE_PY, make_model
from edgepack.runtime.edge import EdgeSettings
from edgepack.runtime.scoring import load_runtime
from edgepack.runtime.settings import RuntimeConfig

from device_agents.agent import Agent, make_client
from device_agents.queues import Queues

DEVICE, MODULE = "edge-dev-1", "edgepack-agent"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Hub:
    certs: HubCertificates
    broker: Broker
    link: LinkProxy
    responder: HubResponder
    connection_string: str


@pytest.fixture
def hub(tmp_path):
    certs = ensure_certificates(tmp_path / "certs")
    try:
        broker = Broker(tmp_path / "broker", certs, _free_port()).start()
    except BrokerError as exc:
        pytest.fail(f"{exc} (scripts/setup.sh installs it)")
    link = LinkProxy(8883, broker.port)
    try:
        responder = HubResponder(broker.port, str(certs.ca), DEVICE, MODULE).start()
    except BaseException:
        link.close()
        broker.stop()
        raise
    key = base64.b64encode(os.urandom(32)).decode()
    yield Hub(certs, broker, link, responder,
              f"HostName=localhost;DeviceId={DEVICE};ModuleId={MODULE};SharedAccessKey={key}")
    responder.stop()
    link.close()
    broker.stop()
    gc.collect()  # paho's dropped sockets are closed here, inside the test, not at the end of the session


@pytest.fixture
def runtime_config(tmp_path) -> Path:
    """A runtime.json serving the sample linear model with the sample score.py."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "score.py").write_text(SCORE_PY)
    make_model(tmp_path / "model" / "model.onnx", seed=11)
    config = RuntimeConfig(entry_script=str(src / "score.py"), source_dir=str(src), model_dir=str(tmp_path / "model"),
                           model={"name": "linear", "version": 1, "sha256": "0" * 64}, target="iot-edge")
    path = tmp_path / "runtime.json"
    data = json.loads(config.to_json())
    data.update(model_dir=config.model_dir, model=config.model)
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def start_agent(hub, tmp_path):
    """Starts an agent in this process for a runtime.json (state in ``state``, or ``tmp_path/state``) and waits
    until it reports itself running; every agent started is stopped at the end."""
    started = []

    def start(config: Path, state: Path | None = None, **env: str) -> Agent:
        state = state or tmp_path / "state"
        runtime = load_runtime(str(config), start=False)
        settings = EdgeSettings.from_env("input1", "output1", {
            "EDGEPACK_IOTHUB_CONNECTION_STRING": hub.connection_string, "EDGEPACK_IOTHUB_CA_FILE": str(hub.certs.ca),
            "EDGEPACK_STATE_DIR": str(state), "EDGEPACK_REPORT_SECONDS": "0.5",
            "EDGEPACK_TWIN_TIMEOUT_SECONDS": "3", **env})
        state.mkdir(parents=True, exist_ok=True)
        agent = Agent(runtime, lambda: make_client(settings), Queues(str(state / "queues.db")), settings)
        agent.start()
        started.append(agent)
        assert hub.responder.wait_for(lambda r: r.reported.get("edgepack", {}).get("status") == "running", 20), \
            "the agent never reported itself running"
        return agent

    yield start
    for agent in started:
        agent.stop()
