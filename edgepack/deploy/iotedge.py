"""IoT Edge deployment manifests (schema 1.1, accepted by IoT Edge 1.5 and 1.6): rendered from a module image's
labels and the deployment's options, checked against IoT Hub's twin limits before anything is sent, redacted for
printing. Pure values, no I/O.

The manifest holds ``$edgeAgent`` (runtime, system modules, the module with ``createOptions`` minified and split
into 512-character chunks, env as ``{"NAME": {"value": ...}}``, a host folder for the outbox and models),
``$edgeHub`` (routes, store-and-forward TTL) and, when a model is named, the module twin's desired ``model``.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from typing import Any

from edgepack.errors import DeployError
from edgepack.runtime.edge import DEFAULT_STATE_DIR, IMAGE, STATE_DIR

# System module image tags per IoT Edge LTS; the newest LTS is the default.
EDGE_RUNTIMES = {"1.5": "1.5", "1.6": "1.6"}
DEFAULT_RUNTIME = "1.6"
CHUNK = 512  # twin values were limited to 512 bytes; IoT Edge re-joins createOptions, createOptions01, ...
MAX_CHUNKS = 8  # what Microsoft's own tooling accepts (4 KB of createOptions)
MAX_DESIRED_BYTES = 32 * 1024  # per twin
MAX_VALUE_BYTES = 4 * 1024
MAX_DEPTH = 10
_MODULE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ROUTE = re.compile(r"\s*FROM\s+(?P<source>\S+)(?:\s+WHERE\s+(?P<where>.+?))?\s+INTO\s+(?P<sink>.+?)\s*$", re.I | re.S)
_SOURCE_MODULE = re.compile(r"^/messages/modules/([^/]+)(?:/|$)")
_SINK_MODULE = re.compile(r'^BrokeredEndpoint\(\s*"/modules/([^/"]+)/inputs/([^"]+)"\s*\)$')
REDACTED = "<redacted>"


@dataclass(frozen=True)
class RegistryCredential:
    """Credentials the IoT Edge agent pulls the module image with (written into the twin, as IoT Edge wants)."""

    address: str
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class ModuleImage:
    """What the image's labels say: a pinned reference, the target, the module's endpoint names."""

    ref: str  # REGISTRY/REPO@sha256:...
    target: str
    module_input: str
    module_output: str


@dataclass(frozen=True)
class EdgeDeploymentOptions:
    """The deployment's choices (the CLI's flags)."""

    module: str = "edgepack-agent"
    version: str = ""  # the module's version string (default: from the image digest, so a new image is recreated)
    model: dict[str, Any] | None = None  # the module twin's desired model {version, digest, uri, sizeBytes}
    routes: tuple[tuple[str, str], ...] = ()  # (name, "FROM ... INTO ..."); default: the output to $upstream
    ttl: int = 7200  # edgeHub store-and-forward seconds
    runtime: str = DEFAULT_RUNTIME
    env: dict[str, str] = field(default_factory=dict)
    state_host_dir: str = ""  # default /var/lib/edgepack/<module>
    credentials: tuple[RegistryCredential, ...] = ()


def chunk_create_options(options: dict[str, Any]) -> dict[str, str]:
    """``createOptions`` minified and split: ``createOptions``, ``createOptions01``, ... of at most 512 chars.

    Raises:
        DeployError: more than 8 chunks (IoT Edge tooling refuses them).
    """
    text = json.dumps(options, separators=(",", ":"), sort_keys=True)
    parts = [text[i:i + CHUNK] for i in range(0, len(text), CHUNK)] or ["{}"]
    if len(parts) > MAX_CHUNKS:
        raise DeployError(f"the module's createOptions are {len(text)} characters, more than {MAX_CHUNKS} chunks "
                          f"of {CHUNK}", hint="Use fewer binds, labels or environment entries in createOptions.")
    return {("createOptions" if i == 0 else f"createOptions{i:02d}"): part for i, part in enumerate(parts)}


@dataclass(frozen=True)
class Route:
    """One edgeHub route: messages from ``source`` (``/messages/*``, ``/messages/modules/M/*``,
    ``/messages/modules/M/outputs/O`` or ``.../outputs/*``), where ``condition`` holds, into ``$upstream``
    (``sink_module`` None) or ``sink_module``'s ``sink_input``."""

    source: str
    condition: str | None
    sink_module: str | None
    sink_input: str | None

    @property
    def source_module(self) -> str | None:
        match = _SOURCE_MODULE.match(self.source)
        return match.group(1) if match else None

    def takes(self, module: str | None, output: str | None) -> bool:
        """Whether a message a module sent to ``output`` (or a device's telemetry) enters this route."""
        parts = self.source.rstrip("/").split("/")[1:]  # messages, modules, M, outputs, O
        if parts in (["messages", "*"], ["messages"]):
            return True
        if module is None or len(parts) < 3 or parts[1] != "modules" or parts[2] != module:
            return False
        if len(parts) == 3 or parts[3] == "*":
            return True
        return len(parts) == 5 and parts[3] == "outputs" and parts[4] in ("*", output)


def parse_route(name: str, route: str) -> Route:
    """Raises:
        DeployError: not ``FROM <source> [WHERE <condition>] INTO <sink>``, or a sink of another kind.
    """
    match = _ROUTE.match(route)
    if not match:
        raise DeployError(f"route '{name}': {route!r} is not 'FROM <source> [WHERE <condition>] INTO <sink>'",
                          hint='For example: FROM /messages/modules/m/outputs/output1 INTO $upstream')
    sink = match["sink"].strip()
    if sink == "$upstream":
        return Route(match["source"], match["where"], None, None)
    into = _SINK_MODULE.match(sink)
    if not into:
        raise DeployError(f"route '{name}': the sink {sink!r} is neither $upstream nor "
                          'BrokeredEndpoint("/modules/<module>/inputs/<input>")',
                          hint="Send results upstream or to another module's input.")
    return Route(match["source"], match["where"], into.group(1), into.group(2))


def _route_modules(name: str, route: str) -> list[str]:
    parsed = parse_route(name, route)
    return [m for m in (parsed.source_module, parsed.sink_module) if m]


def render_manifest(image: ModuleImage, options: EdgeDeploymentOptions) -> dict[str, Any]:
    """The deployment manifest ``{"modulesContent": ...}``.

    Raises:
        DeployError: a bad module name, runtime, route (a module not in the deployment is named), or options
            that break the hub's limits (see ``check_limits``).
    """
    module = options.module
    if not _MODULE.fullmatch(module):
        raise DeployError(f"module name {module!r}: use letters, digits, '-' and '_' (at most 64)",
                          hint="Pass --module NAME.")
    if options.runtime not in EDGE_RUNTIMES:
        raise DeployError(f"IoT Edge runtime {options.runtime!r} is not one edgepack writes manifests for",
                          hint=f"Use one of {', '.join(EDGE_RUNTIMES)} (default {DEFAULT_RUNTIME}).")
    if image.target != "iot-edge":
        raise DeployError(f"deploying '{image.ref}' to IoT Edge: it is a {image.target or 'non-edgepack'} image",
                          hint="Package with --target iot-edge.")
    routes = options.routes or (("upstream", f"FROM /messages/modules/{module}/outputs/{image.module_output} "
                                             "INTO $upstream"),)
    for name, route in routes:
        for named in _route_modules(name, route):
            if named != module:
                raise DeployError(f"route '{name}' names module '{named}', which this deployment does not have",
                                  hint=f"The deployment's module is '{module}' (--module).")
    host_dir = options.state_host_dir or f"{DEFAULT_STATE_DIR}/{module}"
    create = {"HostConfig": {"Binds": [f"{host_dir}:{DEFAULT_STATE_DIR}"]}}
    env = {STATE_DIR: DEFAULT_STATE_DIR, IMAGE: image.ref, **options.env}
    tag = options.version or image.ref.rsplit("@sha256:", 1)[-1][:12]
    tag_runtime = EDGE_RUNTIMES[options.runtime]
    agent: dict[str, Any] = {
        "schemaVersion": "1.1",
        "runtime": {"type": "docker", "settings": {"minDockerVersion": "v1.25", "loggingOptions": ""}},
        "systemModules": {
            "edgeAgent": {"type": "docker", "settings": {"image": f"mcr.microsoft.com/azureiotedge-agent:{tag_runtime}",
                                                         "createOptions": "{}"}},
            "edgeHub": {"type": "docker", "status": "running", "restartPolicy": "always", "startupOrder": 0,
                        "settings": {"image": f"mcr.microsoft.com/azureiotedge-hub:{tag_runtime}",
                                     **chunk_create_options({"HostConfig": {"PortBindings": {
                                         "5671/tcp": [{"HostPort": "5671"}], "8883/tcp": [{"HostPort": "8883"}],
                                         "443/tcp": [{"HostPort": "443"}]}}})}},
        },
        "modules": {module: {
            "version": tag, "type": "docker", "status": "running", "restartPolicy": "always", "startupOrder": 1,
            "imagePullPolicy": "on-create", "env": {k: {"value": v} for k, v in sorted(env.items())},
            "settings": {"image": image.ref, **chunk_create_options(create)},
        }},
    }
    if options.credentials:
        agent["runtime"]["settings"]["registryCredentials"] = {
            re.sub(r"[^A-Za-z0-9]", "", c.address) or "registry": {"username": c.username, "password": c.password,
                                                                    "address": c.address}
            for c in options.credentials}
    hub = {"schemaVersion": "1.1", "routes": {name: {"route": route, "priority": 0, "timeToLiveSecs": options.ttl}
                                              for name, route in routes},
           "storeAndForwardConfiguration": {"timeToLiveSecs": options.ttl}}
    content: dict[str, Any] = {"$edgeAgent": {"properties.desired": agent},
                               "$edgeHub": {"properties.desired": hub}}
    if options.model is not None:
        content[module] = {"properties.desired": {"model": options.model}}
    manifest = {"modulesContent": content}
    check_limits(manifest)
    return manifest


def _check_value(path: str, value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise DeployError(f"{path}: nested deeper than {MAX_DEPTH} levels, which a twin does not take",
                          hint="Flatten the desired properties.")
    if isinstance(value, list):
        raise DeployError(f"{path}: a list, which twins do not take", hint="Use an object keyed by name.")
    if isinstance(value, dict):
        for key, item in value.items():
            plain = key.lstrip("$") if key.startswith("$") else key  # "$version" and the like are the hub's
            if not plain or any(c in plain for c in ".$ ") or len(key) > 1024:
                raise DeployError(f"{path}: the key {key!r} is not a twin key (no '.', '$' or spaces, at most "
                                  "1 KB)", hint="Rename it.")
            _check_value(f"{path}.{key}", item, depth + 1)
        return
    if isinstance(value, str) and len(value.encode()) > MAX_VALUE_BYTES:
        raise DeployError(f"{path}: {len(value.encode())} bytes, over the hub's {MAX_VALUE_BYTES} bytes per value",
                          hint="Shorten it (createOptions are chunked already).")


def check_limits(manifest: dict[str, Any]) -> None:
    """IoT Hub's twin rules for every module's desired properties: at most 32 KB each, 4 KB per value, depth 10,
    no lists, plain keys.

    Raises:
        DeployError: the first rule broken, naming the module and property path.
    """
    for module, section in manifest["modulesContent"].items():
        desired = section.get("properties.desired", {})
        size = len(json.dumps(desired, separators=(",", ":")).encode())
        if size > MAX_DESIRED_BYTES:
            raise DeployError(f"{module}: the desired properties are {size} bytes, over the hub's "
                              f"{MAX_DESIRED_BYTES} bytes per twin", hint="Move configuration out of the twin.")
        _check_value(module, desired, 1)


def redact(manifest: dict[str, Any]) -> dict[str, Any]:
    """A copy for printing: registry passwords and secret env values replaced by ``<redacted>``."""
    out = copy.deepcopy(manifest)
    agent = out["modulesContent"]["$edgeAgent"]["properties.desired"]
    for cred in (agent["runtime"]["settings"].get("registryCredentials") or {}).values():
        cred["password"] = REDACTED
    for spec in agent["modules"].values():
        redact_module(spec)
    return out


def redact_module(spec: dict[str, Any]) -> dict[str, Any]:
    """A module spec's secret env values (by name) replaced by ``<redacted>``, in place; returns it."""
    for name, entry in (spec.get("env") or {}).items():
        if re.search(r"PASSWORD|SECRET|KEY|TOKEN|CONNECTION", name, re.I):  # EDGEPACK_MODEL_REGISTRY_PASSWORD
            entry["value"] = REDACTED
    return spec
