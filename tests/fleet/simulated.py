"""Devices simulated at the twin level for rollout tests: each reports the model its desired properties name, as
the agent does, with an error rate per model digest."""

from __future__ import annotations

import threading
import time

from edgepack.devtools.iothub.hub import LocalHub

AGENT = "edgepack-agent"
V1 = {"version": 1, "digest": "sha256:" + "1" * 64, "uri": "127.0.0.1:5000/m@sha256:" + "1" * 64}
V2 = {"version": 2, "digest": "sha256:" + "2" * 64, "uri": "127.0.0.1:5000/m@sha256:" + "2" * 64}


class Fleet:
    """Edge devices whose agent module reports the model its desired properties name, with an error rate per
    model digest; ``offline`` ones neither connect nor report."""

    def __init__(self, hub: LocalHub, count: int, canary: int, *, interval: float = 0.02,
                 modules: dict | None = None) -> None:
        self.hub, self.devices, self.interval = hub, [f"dev-{i:03}" for i in range(count)], interval
        self.error_rate: dict[str, float] = {}
        self.agreement: dict[str, float] = {}  # a shadow's agreement with the served model, per digest
        self.offline: set[str] = set()
        self._stop = threading.Event()
        for i, device in enumerate(self.devices):
            hub.state.add_device(device, edge=True)
            hub.state.add_module(device, AGENT)
            hub.state.update_twin(device, None, {"tags": {"edgepack": {"ring": "canary" if i < canary else "main"}}})
        hub.state.set_configuration("base", {
            "id": "base", "priority": 10, "targetCondition": "*", "createdTimeUtc": "2026-01-01T00:00:00Z",
            "content": {"modulesContent": {
                "$edgeAgent": {"properties.desired": {"schemaVersion": "1.1", "modules": modules or {}}},
                AGENT: {"properties.desired": {"model": V1}}}},
            "labels": {}, "metrics": {"queries": {}}, "etag": "x"})
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def desired(self, device: str) -> dict:
        return self.hub.state.twin(device, AGENT)["properties"]["desired"].get("model") or {}

    def image(self, device: str) -> str | None:
        """The agent image edgeAgent's desired modules name for the device (what its agent would report)."""
        try:
            desired = self.hub.state.twin(device, "$edgeAgent")["properties"]["desired"]
        except Exception:  # noqa: BLE001 - no deployment applied yet
            return None
        return (((desired.get("modules") or {}).get(AGENT) or {}).get("settings") or {}).get("image")

    def wait_all(self, model: dict, timeout: float = 10.0) -> bool:
        """Wait until every device's desired model is ``model``; whether it came to that."""
        deadline = time.time() + timeout
        while any(self.desired(d) != model for d in self.devices):
            if time.time() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            for device in self.devices:
                online = device not in self.offline
                self.hub.state.set_connected(device, AGENT, online)
                if online:
                    digest = self.desired(device).get("digest")
                    image = self.image(device)
                    desired = self.hub.state.twin(device, AGENT)["properties"]["desired"]
                    shadow = (desired.get("shadow") or {}).get("digest")
                    self.hub.state.patch_reported(device, AGENT, {"edgepack": {
                        "model": {"digest": digest, "status": "serving"}, "image": image,
                        "errorRate": max(self.error_rate.get(digest, 0.0), self.error_rate.get(image, 0.0)),
                        "p99Ms": 4.0,
                        "shadow": {"digest": shadow, "status": "serving", "compared": 50,
                                   "agreement": self.agreement.get(shadow, 1.0), "p99Ms": 5.0} if shadow else None}})
            time.sleep(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
