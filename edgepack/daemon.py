"""Docker engine adapter: the only module that imports docker.

docker-py reports some failures only inside its JSON stream (docker/docker-py#3161): every stream is read to
the end and each line checked for ``error``/``errorDetail``. Engine errors become DaemonError here, once.
"""

from __future__ import annotations

import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import docker
import docker.errors

from edgepack.errors import DaemonError
from edgepack.oci.dockerarchive import write_docker_archive

_START_HINT = "Start it with 'bash scripts/setup.sh' or set DOCKER_HOST."


@dataclass(frozen=True)
class RunningContainer:
    """A started container and the host ports its container ports were published on."""

    name: str
    id: str
    host_ports: dict[int, int]


def check_stream(lines: Iterable[Mapping[str, Any]], action: str) -> list[Mapping[str, Any]]:
    """Read a decoded docker JSON stream to the end; raise on any in-stream error.

    Raises:
        DaemonError: a line carried ``error`` or ``errorDetail`` (the message names it; log_tail has the rest).
    """
    seen: list[Mapping[str, Any]] = []
    for line in lines:
        seen.append(line)
        if "error" in line or "errorDetail" in line:
            detail = line.get("errorDetail") or {}
            message = detail.get("message") or line.get("error") or "unknown error"
            tail = "\n".join(str(x.get("stream") or x.get("status") or x) for x in seen[-20:])
            hint = ("Log in to the registry with 'docker login'." if "auth" in message.lower() or
                    "denied" in message.lower() else "See the log lines above.")
            raise DaemonError(f"{action}: {message.strip()}", hint=hint, log_tail=tail)
    return seen


class DockerDaemon:
    """A Docker engine reached through docker-py (``DOCKER_HOST`` or the local socket)."""

    def __init__(self, client: Any = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        """The docker-py client, connected on first use."""
        if self._client is None:
            try:
                self._client = docker.from_env()
                self._client.ping()
            except docker.errors.DockerException as exc:
                raise DaemonError(f"connecting to the docker engine: {exc}", hint=_START_HINT) from exc
        return self._client

    def load_layout(self, layout_dir: Path, tag: str, platform: str | None = None) -> str:
        """Load an OCI layout into the engine as ``tag`` (of a multi-platform layout, the image for ``platform``,
        default this machine's); returns the image id."""
        with tempfile.TemporaryFile() as archive:
            write_docker_archive(layout_dir, tag, archive, platform)
            archive.seek(0)
            try:
                images = self.client.images.load(archive)
            except docker.errors.APIError as exc:
                raise DaemonError(f"loading image layout '{layout_dir}': {exc.explanation or exc}",
                                  hint="Check the engine's log; the layout may be damaged.") from exc
        if not images:
            raise DaemonError(f"loading image layout '{layout_dir}': the engine loaded nothing",
                              hint="Check the engine's log; the layout may be damaged.")
        return images[0].id

    def pull(self, ref: str, auth: Mapping[str, str] | None = None) -> None:
        """Pull ``ref`` (checked line by line), with ``auth`` ({username, password}) when given."""
        repo, tag = (ref.split("@")[0], ref.split("@")[1]) if "@" in ref else (ref, None)
        try:
            check_stream(self.client.api.pull(repo, tag=tag, stream=True, decode=True,
                                              auth_config=dict(auth) if auth else None), f"pulling '{ref}'")
        except docker.errors.APIError as exc:
            raise DaemonError(f"pulling '{ref}': {exc.explanation or exc}",
                              hint="Check the reference and that the engine can reach the registry.") from exc

    def inspect_image(self, ref: str) -> dict[str, Any]:
        """The engine's ``image inspect`` document."""
        try:
            return self.client.api.inspect_image(ref)
        except docker.errors.APIError as exc:
            raise DaemonError(f"inspecting image '{ref}': {exc.explanation or exc}",
                              hint="Pull or load the image first.") from exc

    def build_context(self, context_dir: Path, tag: str) -> str:
        """``docker build`` a context (legacy builder); returns the image id."""
        try:
            lines = check_stream(self.client.api.build(path=str(context_dir), tag=tag, rm=True, decode=True),
                                 f"building '{context_dir}'")
        except docker.errors.APIError as exc:
            raise DaemonError(f"building '{context_dir}': {exc.explanation or exc}",
                              hint="See the engine's log.") from exc
        ids = [x["aux"]["ID"] for x in lines if isinstance(x.get("aux"), dict) and "ID" in x["aux"]]
        return ids[-1] if ids else self.inspect_image(tag)["Id"]

    def push(self, tag: str) -> str:
        """``docker push`` a tag; returns the pushed digest."""
        try:
            lines = check_stream(self.client.api.push(tag, stream=True, decode=True), f"pushing '{tag}'")
        except docker.errors.APIError as exc:
            raise DaemonError(f"pushing '{tag}': {exc.explanation or exc}", hint="See the engine's log.") from exc
        digests = [x["aux"]["Digest"] for x in lines if isinstance(x.get("aux"), dict) and "Digest" in x["aux"]]
        return digests[-1] if digests else ""

    def run(self, image: str, *, name: str, ports: Mapping[int, int | None], env: Mapping[str, str],
            command: list[str] | None, labels: Mapping[str, str], volumes: Mapping[str, str],
            host_network: bool = False) -> RunningContainer:
        """Start a detached container; ports with None get a free host port (on loopback only).

        With ``host_network`` the container shares the host's network (so it reaches services on the host's
        loopback, such as a local storage emulator) and listens on the host directly: ``ports`` map to
        themselves and nothing is published.
        """
        try:
            self.client.containers.get(name)
            raise DaemonError(f"starting '{name}': a container with that name exists",
                              hint=f"Stop it with 'edgepack stop {name}' or choose another --name.")
        except docker.errors.NotFound:
            pass
        try:
            network = {"network_mode": "host"} if host_network else {
                "ports": {f"{p}/tcp": ("127.0.0.1", h) for p, h in ports.items()}}
            container = self.client.containers.run(
                image, command=command, name=name, detach=True, environment=dict(env), labels=dict(labels),
                volumes={host: {"bind": inside, "mode": "ro"} for host, inside in volumes.items()}, **network)
            container.reload()
        except docker.errors.APIError as exc:
            raise DaemonError(f"starting '{name}' from '{image}': {exc.explanation or exc}",
                              hint="Check the image and that the port is free.") from exc
        if host_network:
            return RunningContainer(name=name, id=container.id, host_ports={p: p for p in ports})
        bound = container.attrs["NetworkSettings"]["Ports"]
        host_ports = {p: int(bound[f"{p}/tcp"][0]["HostPort"]) for p in ports}
        return RunningContainer(name=name, id=container.id, host_ports=host_ports)

    def wait_ready(self, url: str, *, timeout: float, container_name: str) -> None:
        """Poll ``url`` until it answers 200.

        Raises:
            DaemonError: the container exited, or ``timeout`` passed (with the container's last log lines).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            container = self.client.containers.get(container_name)
            if container.status in ("exited", "dead"):
                tail = self.logs(container_name, tail=20)
                raise DaemonError(f"starting '{container_name}': the container exited "
                                  f"(code {container.attrs['State']['ExitCode']}):\n{tail}",
                                  hint=f"Read 'edgepack logs {container_name}', fix the cause, then "
                                       f"'edgepack stop {container_name}'.", log_tail=tail)
            time.sleep(0.25)
        tail = self.logs(container_name, tail=20)
        raise DaemonError(f"waiting for '{container_name}' at {url}: not ready after {timeout:.0f}s:\n{tail}",
                          hint="Raise --timeout if the model loads slowly.", log_tail=tail)

    def _container(self, name: str) -> Any:
        try:
            return self.client.containers.get(name)
        except docker.errors.NotFound as exc:
            raise DaemonError(f"finding container '{name}': no container with that name",
                              hint="List them with 'docker ps -a'.") from exc

    def logs(self, name: str, tail: int | None = None) -> str:
        """The container's output (stdout and stderr)."""
        return self._container(name).logs(tail=tail if tail is not None else "all").decode(errors="replace")

    def stop(self, name: str) -> None:
        """Stop and remove a container."""
        container = self._container(name)
        try:
            container.remove(force=True)
        except docker.errors.APIError as exc:
            raise DaemonError(f"stopping '{name}': {exc.explanation or exc}", hint="See the engine's log.") from exc
