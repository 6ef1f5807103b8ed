"""The simulated fleet: identities, ring tags and a base deployment on the local hub (through azure-iot-hub's
service clients, as for a real hub), agent processes (``edgepack.devtools.fleetsim.agents``), inputs to every
device at a steady rate, and a tally of which inputs came back from ``$upstream``, by which model version.

Side effects: the hub's registry and deployments, processes, files under ``workdir``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgepack.errors import FleetError

MODULE = "edgepack-agent"
DEFAULT_RINGS = (("canary", 0.05), ("ring1", 0.25))  # the rest has no ring tag: a rollout's "all" takes it


@dataclass(frozen=True)
class SimSpec:
    """What to simulate."""

    devices: int
    prefix: str = "sim"
    rings: tuple[tuple[str, float], ...] = DEFAULT_RINGS
    fail_rate: float = 0.0
    offline_rate: float = 0.0
    offline_s: float = 600.0  # how long the offline share stays away before its agents start
    rate: float = 1.0  # inputs per device per second
    per_process: int = 25
    report_s: float = 5.0

    def device_ids(self) -> list[str]:
        width = max(4, len(str(self.devices - 1)))
        return [f"{self.prefix}-{i:0{width}}" for i in range(self.devices)]


def parse_ring_shares(text: str) -> tuple[tuple[str, float], ...]:
    """``canary=5%,ring1=25%`` (shares of the fleet, in order; the rest gets no ring tag).

    Raises:
        FleetError: a part does not parse, or the shares pass 100%.
    """
    rings = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, share = part.partition("=")
        try:
            value = float(share.strip().rstrip("%")) / (100 if share.strip().endswith("%") else 1)
        except ValueError:
            value = -1.0
        if not sep or not name.strip() or not 0 < value <= 1:
            raise FleetError(f"--rings: '{part}' is not NAME=SHARE", hint="E.g. --rings canary=5%,ring1=25%.")
        rings.append((name.strip(), value))
    if sum(v for _, v in rings) > 1 + 1e-9:
        raise FleetError(f"--rings: the shares of '{text}' add up to more than 100%", hint="Lower them.")
    return tuple(rings)


def _order(salt: str, devices: list[str]) -> list[str]:
    return sorted(devices, key=lambda d: hashlib.sha256(f"{salt}\0{d}".encode()).hexdigest())


def pick(devices: list[str], share: float, salt: str) -> set[str]:
    """A stable ``share`` of ``devices`` (rounded up when the share is not 0), chosen by a hash, not by name."""
    count = min(len(devices), math.ceil(share * len(devices))) if share > 0 else 0
    return set(_order(salt, devices)[:count])


def ring_tags(devices: list[str], rings: tuple[tuple[str, float], ...]) -> dict[str, str | None]:
    """Each device's ring: the first devices (in name order) go to the first ring, and so on."""
    tags: dict[str, str | None] = dict.fromkeys(devices)
    at = 0
    for name, share in rings:
        count = max(1, round(share * len(devices)))
        for device in devices[at:at + count]:
            tags[device] = name
        at += count
    return tags


@dataclass
class Tally:
    """Inputs sent and results seen, by input id (a result's correlation id is its input's id)."""

    sent: dict[str, str] = field(default_factory=dict)  # input id -> device
    answered: set[str] = field(default_factory=set)
    duplicates: int = 0
    errors: int = 0
    by_version: Counter = field(default_factory=Counter)
    served: dict[str, set[str]] = field(default_factory=dict)  # model version -> devices whose results it made
    error_devices: Counter = field(default_factory=Counter)

    def result(self, record: dict[str, Any]) -> None:
        input_id = record.get("correlation_id")
        if input_id not in self.sent:
            return  # not this simulation's
        if input_id in self.answered:
            self.duplicates += 1
            return
        self.answered.add(input_id)
        properties = record.get("properties") or {}
        version = str(properties.get("modelVersion", ""))
        self.by_version[version] += 1
        self.served.setdefault(version, set()).add(self.sent[input_id])
        if properties.get("error") == "true":
            self.errors += 1
            self.error_devices[self.sent[input_id]] += 1

    def unanswered(self, devices: set[str] | None = None) -> int:
        return sum(1 for i, d in self.sent.items() if i not in self.answered and (devices is None or d in devices))

    def summary(self, away: set[str]) -> dict[str, Any]:
        return {"sent": len(self.sent), "answered": len(self.answered), "missing": self.unanswered() -
                self.unanswered(away), "waitingForOfflineDevices": self.unanswered(away),
                "duplicates": self.duplicates, "errors": self.errors,
                "resultsByModelVersion": dict(sorted(self.by_version.items())),
                "devicesByModelVersion": {v: len(d) for v, d in sorted(self.served.items())},
                "devicesWithErrors": len(self.error_devices)}


def base_deployment(prefix: str) -> dict[str, Any]:
    """The simulated devices' base deployment: no containers to run (the agents run as processes here), routes
    from the agent's outputs to ``$upstream``; no desired model, so each agent serves its own until a rollout."""
    return {"$edgeAgent": {"properties.desired": {
                "schemaVersion": "1.1", "runtime": {"type": "docker", "settings": {}},
                "systemModules": {}, "modules": {}}},
            "$edgeHub": {"properties.desired": {
                "schemaVersion": "1.1", "storeAndForwardConfiguration": {"timeToLiveSecs": 7200},
                "routes": {f"{prefix}-upstream": f"FROM /messages/modules/{MODULE}/outputs/* INTO $upstream"}}}}


class Simulation:
    """A simulated fleet on the local hub whose endpoints are ``endpoints`` (``edgepack edge hub start``)."""

    def __init__(self, spec: SimSpec, *, hub_home: Path, endpoints: Any, runtime_config: Path, workdir: Path,
                 body: bytes) -> None:
        self.spec, self.hub_home, self.endpoints = spec, hub_home, endpoints
        self.runtime_config, self.workdir, self.body = runtime_config, workdir, body
        self.devices = spec.device_ids()
        self.failing = pick(self.devices, spec.fail_rate, f"{spec.prefix}-fail")
        self.offline = pick(self.devices, spec.offline_rate, f"{spec.prefix}-offline")
        self.tally = Tally()
        self.processes: list[subprocess.Popen] = []
        self.started = 0.0
        self._upstream_offset = 0
        self._sequence = 0
        self._run = uuid.uuid4().hex[:8]  # in every input id: inputs an earlier run left queued are not counted
        self._session: Any = None

    # -- set-up
    def _hub(self) -> Any:
        from edgepack.fleet.hub import HubClient

        return HubClient(self.endpoints.service_connection_string, ca_file=self.endpoints.ca_file)

    def _identity(self, hub: Any, device: str, ring: str | None) -> str:
        """Register ``device`` (IoT Edge) and its agent module when missing, tag it; its module connection string."""
        from azure.iot.hub.models import Twin

        registry = hub.registry
        try:
            registry.get_device(device)
        except Exception:  # noqa: BLE001 - msrest's error for a 404: register it
            hub._call(f"registering device '{device}'",
                      lambda: registry.create_device_with_sas(device, None, None, "enabled", iot_edge=True))
        try:
            module = registry.get_module(device, MODULE)
        except Exception:  # noqa: BLE001 - not registered yet
            module = hub._call(f"registering module '{device}/{MODULE}'",
                               lambda: registry.create_module_with_sas(device, MODULE, None, None, None))
        tags = {"edgepack": {"ring": ring, "simulation": self.spec.prefix}}
        hub._call(f"tagging device '{device}'", lambda: registry.update_twin(device, Twin(tags=tags), "*"))
        key = module.authentication.symmetric_key.primary_key
        return f"HostName=localhost;DeviceId={device};ModuleId={MODULE};SharedAccessKey={key}"

    def setup(self) -> dict[str, str]:
        """Identities, tags and the base deployment; each device's module connection string."""
        from azure.iot.hub.models import Configuration, ConfigurationContent

        rings = ring_tags(self.devices, self.spec.rings)
        with ThreadPoolExecutor(max_workers=4) as pool:
            hubs = [self._hub() for _ in range(4)]
            strings = list(pool.map(lambda i: self._identity(hubs[i % 4], self.devices[i], rings[self.devices[i]]),
                                    range(len(self.devices))))
        hub = self._hub()
        name = f"edgepack-sim-{self.spec.prefix}"
        existing = {c.id for c in hub.layers()}
        if name not in existing:
            hub._call(f"creating deployment '{name}'", lambda: hub.configurations.create_configuration(Configuration(
                id=name, schema_version="1.0", priority=1, labels={"edgepack-simulation": self.spec.prefix},
                target_condition=f"tags.edgepack.simulation = '{self.spec.prefix}'",
                content=ConfigurationContent(modules_content=base_deployment(self.spec.prefix)))))
        return dict(zip(self.devices, strings))

    # -- agents
    def start(self, connection_strings: dict[str, str]) -> None:
        """Start the agent processes (the offline share starts ``offline_s`` later)."""
        self.started = time.time()
        upstream = self.hub_home / "upstream.jsonl"
        self._upstream_offset = upstream.stat().st_size if upstream.exists() else 0  # earlier runs' results
        per = max(1, self.spec.per_process)
        for number, at in enumerate(range(0, len(self.devices), per)):
            chunk = self.devices[at:at + per]
            plan = {"runtime_config": str(self.runtime_config), "ca_file": self.endpoints.ca_file,
                    "report_seconds": self.spec.report_s, "parent": os.getpid(),
                    "agents": [{"device": d, "connection_string": connection_strings[d],
                                "state_dir": str(self.workdir / "devices" / d), "failing": d in self.failing,
                                "start_after": self.spec.offline_s if d in self.offline else 0} for d in chunk]}
            log = open(self.workdir / f"agents-{number}.log", "ab")
            process = subprocess.Popen([sys.executable, "-m", "edgepack.devtools.fleetsim.agents"],
                                       stdin=subprocess.PIPE, stdout=log, stderr=log, start_new_session=True,
                                       env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})  # the user's source
            log.close()
            assert process.stdin is not None
            process.stdin.write(json.dumps(plan).encode())
            process.stdin.close()
            self.processes.append(process)

    def away(self) -> set[str]:
        """Devices still offline."""
        return self.offline if time.time() - self.started < self.spec.offline_s else set()

    # -- traffic
    def send(self) -> None:
        """One input to every device (an offline one's wait at the hub, as edgeHub keeps them)."""
        from azure.iot.hub.auth import ConnectionStringAuthentication

        if self._session is None:
            self._session = ConnectionStringAuthentication(
                self.endpoints.service_connection_string).signed_session()
        self._sequence += 1
        messages = [{"device": d, "module": MODULE, "input": "input1", "body": self.body.decode(),
                     "messageId": f"{d}:{self._run}:{self._sequence}"} for d in self.devices]
        url = f"https://localhost:{self.endpoints.service_port}/edgepack/inputs"
        try:
            response = self._session.post(url, json={"messages": messages}, verify=self.endpoints.ca_file,
                                          timeout=30)
        except OSError as exc:
            raise FleetError(f"sending inputs to the local hub: {exc}", hint="Is it still running?") from None
        if response.status_code != 200:
            raise FleetError(f"sending inputs to the local hub: HTTP {response.status_code}: {response.text[:200]}",
                             hint="Is it still running?")
        for m in messages:
            self.tally.sent[m["messageId"]] = m["device"]

    def collect(self) -> None:
        """Read the results that reached ``$upstream`` since the last call."""
        path = self.hub_home / "upstream.jsonl"
        if not path.exists():
            return
        with open(path, "rb") as handle:
            handle.seek(self._upstream_offset)
            for line in handle:
                if not line.endswith(b"\n"):
                    break  # being written: read it next time
                self._upstream_offset += len(line)
                try:
                    self.tally.result(json.loads(line))
                except ValueError:
                    continue

    def models(self) -> dict[str, Any]:
        """What the agents report: devices per served model version, connected, and update statuses."""
        reports = self._hub().module_reports(MODULE)
        ours = {d: r for d, r in reports.items() if d in set(self.devices)}
        versions = Counter(str((r.reported.get("model") or {}).get("version", "?")) for r in ours.values()
                           if r.connected)
        return {"connected": sum(1 for r in ours.values() if r.connected),
                "servingByVersion": dict(sorted(versions.items()))}

    def snapshot(self) -> dict[str, Any]:
        self.collect()
        return {"devices": len(self.devices), "failing": len(self.failing), "offline": len(self.away()),
                "agentProcesses": sum(1 for p in self.processes if p.poll() is None),
                **self.tally.summary(self.away())}

    # -- the end
    def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the results of the inputs sent to devices that are online."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.collect()
            if not self.tally.unanswered() - self.tally.unanswered(self.away()):
                return
            time.sleep(0.5)

    def stop(self, grace: float = 30.0) -> None:
        """Stop the agents (what they queued stays in their state folders), killing those still up after
        ``grace`` seconds."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in self.processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
