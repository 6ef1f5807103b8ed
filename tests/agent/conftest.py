"""The local hub for agent tests (its gateway on a port of its own), behind a link proxy on 127.0.0.1:8883 (the port
the device SDK always uses) that tests cut and restore; ``hub.responder`` is the agent's module identity."""

from __future__ import annotations

import gc
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgepack.devtools.iothub.broker import Broker, BrokerError
from edgepack.devtools.iothub.certs import HubCertificates
from edgepack.devtools.iothub.hub import LocalHub
from edgepack.devtools.iothub.linkproxy import LinkProxy
from edgepack.devtools.iothub.responder import IdentityView
from edgepack.devtools.projects import SCORE_PY, make_model
from edgepack.runtime.edge import EdgeSettings
from edgepack.runtime.scoring import load_runtime
from edgepack.runtime.settings import RuntimeConfig

from device_agents.agent import Agent, make_client
from device_agents.queues import Queues

DEVICE, MODULE = "edge-dev-1", "edgepack-agent"


@dataclass
class Hub:
    certs: HubCertificates
    broker: Broker
    link: LinkProxy
    responder: IdentityView
    connection_string: str
    local: LocalHub


@pytest.fixture
def hub(tmp_path):
    local = LocalHub(tmp_path / "hub", device_port=0, service_port=0)
    try:
        local.start()
    except BrokerError as exc:
        pytest.fail(f"{exc} (scripts/setup.sh installs it)")
    local.state.add_device(DEVICE, edge=True)
    local.state.add_module(DEVICE, MODULE)
    assert local.gateway and local.responder
    link = LinkProxy(8883, local.gateway.port)
    yield Hub(local.certs, local.broker, link, local.responder.identity(DEVICE, MODULE),
              local.state.connection_string(DEVICE, MODULE), local)
    link.close()
    local.stop()
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


# An input the agent probes a new model with (the sample model takes rows of 4 floats).
SAMPLE = {"data": [[0.5, -0.5, 0.25, 1.0]]}


@pytest.fixture
def sampled_config(runtime_config):
    """The sample runtime.json with an input sample: the agent probes a new model with it."""
    data = json.loads(runtime_config.read_text())
    data["input_sample"] = SAMPLE
    runtime_config.write_text(json.dumps(data))
    return runtime_config


@pytest.fixture
def models():
    """A loopback HTTP model server (byte ranges, cut connections) for the agent to fetch models from."""
    from tests.agent.modelserver import ModelServer

    server = ModelServer()
    yield server
    server.close()


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
