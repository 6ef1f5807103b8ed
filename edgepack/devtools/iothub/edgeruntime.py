"""The local hub's stand-in for edgeAgent: when a device's deployment changes, its modules are started on the
Docker engine (docker-py) as the manifest says, and what is no longer in it is removed.

Each module runs as container ``edgepack-hub-<hub>.<device>.<module>`` with the manifest's env and image, the joined
``createOptions`` (``Env``, ``Cmd``, ``Entrypoint``, ``Labels``, ``HostConfig.Binds``, ``HostConfig.Devices``
and ``HostConfig.Privileged`` are honoured; port bindings are not needed: the container shares the host's network
to reach the hub's gateway on 127.0.0.1), its identity's connection string and the hub's CA. A bind of a host
folder is moved under ``<hub>/devices/<device>/fs/``: each local device has a disk of its own. A changed module
(``version``, image, env or options) is recreated; the others are left running. Results are reported on the
device's ``$edgeAgent`` twin (``modules.<name>.runtimeStatus``: running, failed with the reason).

Side effects: containers on the local engine, a worker thread.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgepack.devtools.iothub.hub import LocalHub

log = logging.getLogger(__name__)
LABEL_DEVICE, LABEL_MODULE, LABEL_SPEC = "edgepack.hub.device", "edgepack.hub.module", "edgepack.hub.spec"
LABEL_HUB = "edgepack.hub.home"  # two local hubs (a developer's and a test's) never touch each other's modules
CA_IN_CONTAINER = "/run/edgepack-hub/ca.pem"


def create_options(settings: dict[str, Any]) -> dict[str, Any]:
    """``createOptions`` and its ``createOptions01..`` chunks joined and parsed."""
    keys = ["createOptions"] + sorted(k for k in settings if k.startswith("createOptions") and k != "createOptions")
    text = "".join(str(settings.get(k) or "") for k in keys) or "{}"
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"createOptions is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError("createOptions is not a JSON object")
    return value


def container_name(hub_home: Path, device: str, module: str) -> str:
    tag = hashlib.sha256(str(hub_home).encode()).hexdigest()[:6]
    return f"edgepack-hub-{tag}.{device}.{module}".replace("$", "")


class EdgeRuntime:
    def __init__(self, hub: "LocalHub") -> None:
        from edgepack.daemon import DockerDaemon

        self.hub = hub
        self.daemon = DockerDaemon()
        self.docker = self.daemon.client
        self._work: queue.Queue[tuple[str, dict[str, Any] | None] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="hub-edge-runtime", daemon=True)

    def start(self) -> "EdgeRuntime":
        self.hub.state.on_content(lambda device, content: self._work.put((device, content)))
        self._thread.start()
        with self.hub.state.lock:
            for device, entry in self.hub.state.devices.items():
                if entry.get("content"):
                    self._work.put((device, entry["content"]))
        return self

    def stop(self, *, remove: bool = True) -> None:
        self._work.put(None)
        self._thread.join(60)
        if remove:
            for container in self.docker.containers.list(all=True, filters={"label": self._mine()}):
                container.remove(force=True)
        self.docker.close()

    def _mine(self, *more: str) -> list[str]:
        return [f"{LABEL_HUB}={self.hub.home}", *more]

    def _loop(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            device, content = item
            try:
                self.apply(device, content)
            except Exception:  # noqa: BLE001 - one device's failure must not stop the others
                log.exception("applying the deployment of %s failed", device)

    def apply(self, device: str, content: dict[str, Any] | None) -> None:
        agent = ((content or {}).get("$edgeAgent") or {}).get("properties.desired") or {}
        modules: dict[str, Any] = agent.get("modules") or {}
        credentials = ((agent.get("runtime") or {}).get("settings") or {}).get("registryCredentials") or {}
        running = {c.labels.get(LABEL_MODULE): c for c in self.docker.containers.list(
            all=True, filters={"label": self._mine(f"{LABEL_DEVICE}={device}")})}
        report: dict[str, Any] = {}
        for name, container in running.items():
            if name not in modules:
                container.remove(force=True)
                report[name] = None
        for name, spec in modules.items():
            report[name] = self._module(device, name, spec, running.get(name), credentials)
        self.hub.state.add_module(device, "$edgeAgent", managed_by="IotEdge")
        desired = self.hub.state.twin(device, "$edgeAgent")["properties"]["desired"]
        self.hub.state.patch_reported(device, "$edgeAgent", {"modules": report,
                                                             "lastDesiredVersion": desired.get("$version")})

    def _module(self, device: str, name: str, spec: dict[str, Any], existing: Any,
                credentials: dict[str, Any]) -> dict[str, Any]:
        settings = spec.get("settings") or {}
        fingerprint = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
        if existing is not None and existing.labels.get(LABEL_SPEC) == fingerprint:
            existing.reload()
            if existing.status == "running" or spec.get("status") == "stopped":
                return {"runtimeStatus": existing.status, "version": spec.get("version", "")}
        if existing is not None:
            existing.remove(force=True)
        try:
            options = create_options(settings)
            image = settings.get("image") or ""
            self._pull(image, credentials)
            self.hub.state.add_module(device, name)
            container = self._create(device, name, spec, options, fingerprint)
            if spec.get("status", "running") == "running":
                container.start()
            return {"runtimeStatus": "running" if spec.get("status", "running") == "running" else "stopped",
                    "version": spec.get("version", ""), "image": image}
        except Exception as exc:  # noqa: BLE001 - reported on the twin, as edgeAgent does
            log.warning("module %s of %s: %s", name, device, exc)
            return {"runtimeStatus": "failed", "statusDescription": str(exc)[:500], "version": spec.get("version", "")}

    def _pull(self, image: str, credentials: dict[str, Any]) -> None:
        """``imagePullPolicy: on-create``: pulled when the engine does not have it."""
        from edgepack.errors import DaemonError

        try:
            self.daemon.inspect_image(image)
            return
        except DaemonError:
            pass
        host = image.split("/", 1)[0]
        auth = next(({"username": c.get("username"), "password": c.get("password")} for c in credentials.values()
                     if isinstance(c, dict) and c.get("address") == host), None)
        self.daemon.pull(image, auth)

    def _device_path(self, device: str, bind: str) -> str:
        """A bind of a host folder, moved into the device's own folder under the hub (each local device has a
        disk of its own, as real ones do); named volumes are left as they are."""
        source, _, rest = bind.partition(":")
        if not source.startswith("/"):
            return bind
        moved = self.hub.home / "devices" / device / "fs" / source.lstrip("/")
        moved.mkdir(parents=True, exist_ok=True)
        return f"{moved}:{rest}"

    def _create(self, device: str, name: str, spec: dict[str, Any], options: dict[str, Any],
                fingerprint: str) -> Any:
        host = options.get("HostConfig") or {}
        env = {k: (v or {}).get("value", "") for k, v in (spec.get("env") or {}).items() if isinstance(v, dict)}
        env.update(dict(item.split("=", 1) for item in options.get("Env") or [] if "=" in item))
        env.update({"EDGEPACK_IOTHUB_CONNECTION_STRING": self.hub.state.connection_string(device, name),
                    "EDGEPACK_IOTHUB_CA_FILE": CA_IN_CONTAINER, "IOTEDGE_DEVICEID": device, "IOTEDGE_MODULEID": name})
        binds = [self._device_path(device, bind) for bind in host.get("Binds") or []]
        binds.append(f"{self.hub.certs.ca}:{CA_IN_CONTAINER}:ro")
        labels = {**(options.get("Labels") or {}), LABEL_HUB: str(self.hub.home), LABEL_DEVICE: device,
                  LABEL_MODULE: name, LABEL_SPEC: fingerprint}
        restart = {"always": "always", "on-failure": "on-failure", "on-unhealthy": "always"}.get(
            spec.get("restartPolicy", "always"), "no")
        devices = [f"{d['PathOnHost']}:{d.get('PathInContainer', d['PathOnHost'])}" for d in host.get("Devices") or []]
        return self.docker.containers.create(
            spec["settings"]["image"], name=container_name(self.hub.home, device, name), environment=env, labels=labels,
            volumes=binds, network_mode="host", command=options.get("Cmd"), entrypoint=options.get("Entrypoint"),
            devices=devices, privileged=bool(host.get("Privileged")),
            restart_policy={"Name": restart} if restart != "no" else None)
