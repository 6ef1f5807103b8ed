"""Local runs on a Docker engine: load or pull an image, start it with its target's local command, wait.

Side effects: the Docker engine (through ``edgepack.daemon``) and the run's keys folder. How to start and probe
an image is read from its own labels (``io.edgepack.*``), so any edgepack image runs the same way.
"""

from __future__ import annotations

import json
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from edgepack.deploy import keys as keystore
from edgepack.errors import DeployError
from edgepack.oci.layout import read_layout
from edgepack.runtime.labels import ImageLabels

KEYS_MOUNT = "/run/edgepack"
MANAGED_LABEL = "io.edgepack.managed"


@dataclass(frozen=True)
class RunResult:
    """A started container: where to send scoring requests and with which keys."""

    name: str
    image: str
    target: str
    url: str
    health_url: str
    auth: str
    keys: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON form for ``--json``."""
        return {"name": self.name, "image": self.image, "target": self.target, "url": self.url,
                "health_url": self.health_url, "auth": self.auth, "keys": self.keys}


def _layout_labels(layout_dir: Path) -> tuple[str, dict[str, str]]:
    image = read_layout(layout_dir)
    config = json.loads(image.blob_path(image.config.digest).read_bytes())
    labels = (config.get("config") or {}).get("Labels") or {}
    return image.manifest_digest, labels


def _default_name(info: ImageLabels, digest: str) -> str:
    raw = f"edgepack-{info.model_name}-{info.target or 'run'}-{digest.split(':')[-1][:8]}"
    return re.sub(r"[^a-zA-Z0-9_.-]", "-", raw)


def resolve_image(daemon: Any, source: str) -> tuple[str, dict[str, str], str]:
    """Make ``source`` (an OCI layout folder or a registry reference) available to the engine.

    Returns (image name for the engine, the image's labels, its digest).
    """
    path = Path(source)
    if path.is_dir():
        digest, labels = _layout_labels(path)
        info = ImageLabels.from_labels(labels)
        stem = re.sub(r"[^a-z0-9_.-]", "-", (info.model_name if info else "image").lower())
        tag = f"edgepack.local/{stem}:{digest.split(':')[1][:16]}"
        daemon.load_layout(path, tag)
        return tag, labels, digest
    daemon.pull(source)
    attrs = daemon.inspect_image(source)
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    digests = attrs.get("RepoDigests") or [attrs.get("Id", "")]
    return source, labels, digests[0].split("@")[-1]


def free_port() -> int:
    """A loopback TCP port free at the time of asking."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_RUN_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")  # Docker's own rule for container names


def check_run_name(name: str) -> str:
    """``name`` when it is a container name (Docker's own rule).

    Raises:
        DeployError: it is not (it could also name a path outside the runs folder).
    """
    if not _RUN_NAME.fullmatch(name) or name in (".", ".."):
        raise DeployError(f"naming local run {name!r}: not a container name",
                          hint="Use letters, digits, '_', '.' and '-', starting with a letter or digit "
                               "(Docker's rule).")
    return name


def run_folder(runs_dir: Path, name: str) -> Path:
    """The folder of the local run ``name`` (its keys), once the name is known to be a container name.

    Raises:
        DeployError: the name breaks Docker's rule.
    """
    return runs_dir / check_run_name(name)


def run(daemon: Any, source: str, *, runs_dir: Path, name: str | None = None, port: int | None = None,
        env: Mapping[str, str] | None = None, timeout: float = 120.0, host_network: bool = False) -> RunResult:
    """Start ``source`` detached, wait until it is ready, and return its URL and keys.

    Raises:
        DeployError: the image was not built by edgepack (no run labels).
        DaemonError: the engine failed, the name is taken, or the container died before it was ready.
    """
    if name is not None:
        run_folder(runs_dir, name)  # before anything is loaded or written
    image, labels, digest = resolve_image(daemon, source)
    info = ImageLabels.from_labels(labels)
    if info is None:
        raise DeployError(f"running '{source}': the image carries no edgepack run labels",
                          hint="Run images made by 'edgepack package'.")
    if info.target == "iot-edge":
        raise DeployError(f"running '{source}': it is an IoT Edge module, which scores hub messages, not HTTP "
                          "requests",
                          hint="Deploy it as a module on an IoT Edge device; for development, run its container "
                               "with EDGEPACK_IOTHUB_CONNECTION_STRING (and EDGEPACK_IOTHUB_CA_FILE) set.")
    name = name or _default_name(info, digest)
    container_port = info.port
    auth = info.auth
    run_env = dict(env or {})
    volumes: dict[str, str] = {}
    keys: dict[str, str] = {}
    if auth not in ("none", "anonymous"):
        folder = run_folder(runs_dir, name)
        keys = keystore.create_keys(folder)
        volumes[str(folder)] = KEYS_MOUNT
        run_env["EDGEPACK_KEYS_FILE"] = f"{KEYS_MOUNT}/{keystore.KEYS_FILE}"
    command = list(info.local_command) if info.local_command else None
    if host_network:
        # The server listens on the host itself: choose its port and tell it through EDGEPACK_PORT.
        container_port = port or free_port()
        run_env["EDGEPACK_PORT"] = str(container_port)
    running = daemon.run(image, name=name, ports={container_port: port}, env=run_env, command=command,
                         labels={MANAGED_LABEL: "true", "io.edgepack.source": source}, volumes=volumes,
                         host_network=host_network)
    base = f"http://127.0.0.1:{running.host_ports[container_port]}"
    health = base + info.ready_path
    daemon.wait_ready(health, timeout=timeout, container_name=name)
    score_path = info.score_path
    return RunResult(name=name, image=image, target=info.target,
                     url=base + score_path if score_path else base, health_url=health, auth=auth, keys=keys)
