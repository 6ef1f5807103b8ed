"""The local hub put together: its state (``hub.json``), certificates, mosquitto (plain, on a loopback port of its
own), the gateway devices connect to (TLS, tokens checked; 127.0.0.1:8883 by default, the port the device SDK
always uses), the responder playing IoT Hub on the broker, and the service API over HTTPS. With ``modules=True``
applied deployments start their modules on the Docker engine (see ``edgeruntime``).

Side effects: files under ``home``, a mosquitto process, threads serving loopback ports.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgepack.devtools.iothub.broker import Broker
from edgepack.devtools.iothub.certs import HubCertificates, ensure_certificates
from edgepack.devtools.iothub.gateway import Gateway
from edgepack.devtools.iothub.responder import HubResponder
from edgepack.devtools.iothub.service import HubService
from edgepack.devtools.iothub.state import HubState

DEVICE_PORT = 8883
SERVICE_PORT = 8443


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class HubEndpoints:
    """What a client of a running hub needs, written to ``hub-endpoints.json`` (0600: it holds the policy key)."""

    service_connection_string: str
    ca_file: str
    device_port: int
    service_port: int
    pid: int

    @classmethod
    def read(cls, home: Path) -> "HubEndpoints":
        return cls(**json.loads((home / "hub-endpoints.json").read_text()))


class LocalHub:
    def __init__(self, home: Path, *, device_port: int = DEVICE_PORT, service_port: int = SERVICE_PORT,
                 modules: bool = False) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        os.chmod(home, 0o700)
        self.certs: HubCertificates = ensure_certificates(home / "certs")
        self.state = HubState(home / "hub.json")
        key_file = home / "service.key"
        if not key_file.exists():
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(os.urandom(32))
        self.broker = Broker(home / "broker", None, free_port())
        self.responder: HubResponder | None = None
        self.gateway: Gateway | None = None
        self.service = HubService(self.certs, self.state, port=service_port, key=key_file.read_bytes(),
                                  invoke=self._invoke, send=self._send)
        self._device_port, self._modules = device_port, modules
        self.runtime: Any = None

    def _invoke(self, device: str, module: str | None, method: str, payload: Any, timeout: float) -> tuple[int, Any]:
        assert self.responder is not None
        return self.responder.invoke(device, module, method, payload, timeout)

    def _send(self, device: str, module: str, input_name: str, body: str, **kwargs: Any) -> str:
        assert self.responder is not None
        return self.responder.send_input(device, module, input_name, body, **kwargs)

    def start(self) -> "LocalHub":
        self.broker.start()
        try:
            self.responder = HubResponder(self.broker.port, self.state,
                                          upstream_log=self.home / "upstream.jsonl").start()
            self.gateway = Gateway(self.certs, self.broker.port, self.state.authenticate, port=self._device_port,
                                   presence=self.state.set_connected,
                                   subscribed=self.responder.subscribed).start()
            self.service.start()
            if self._modules:
                from edgepack.devtools.iothub.edgeruntime import EdgeRuntime
                self.runtime = EdgeRuntime(self).start()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def device_port(self) -> int:
        return self.gateway.port if self.gateway else self._device_port

    def endpoints(self) -> HubEndpoints:
        return HubEndpoints(self.service.connection_string, str(self.certs.ca), self.device_port, self.service.port,
                            os.getpid())

    def write_endpoints(self) -> Path:
        path = self.home / "hub-endpoints.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(self.endpoints().__dict__, handle)
        return path

    def stop(self) -> None:
        if self.runtime is not None:
            self.runtime.stop()
        for part in (self.service, self.gateway, self.responder):
            if part is not None:
                try:
                    part.stop()
                except Exception:  # noqa: BLE001 - stop what can be stopped
                    pass
        self.broker.stop()
        self.state.close()
        (self.home / "hub-endpoints.json").unlink(missing_ok=True)
