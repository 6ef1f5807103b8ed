"""What the local hub knows: device and module identities with their keys, their twins (tags, desired and
reported properties with ``$version``), the deployment content applied to each IoT Edge device, and
configurations. One lock, one JSON file (written atomically a moment after a change, and at stop), listeners
told of desired patches and applied content. Both the gateway (device side) and the service API read it.

Twin documents have IoT Hub's shape (``deviceId``, ``moduleId``, ``etag``, ``version``, ``tags``,
``properties.desired/reported``), so the query language runs over them as over the hub's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl, quote_plus, unquote

from edgepack.devtools.iothub.query import condition, parse_query

# IoT Hub allows more (including MQTT's wildcards); this hub refuses what would break its topics
_ID = re.compile(r"^[A-Za-z0-9\-.:_=@$!(),']{1,128}$")

DesiredListener = Callable[[str, "str | None", dict[str, Any], int], None]
ContentListener = Callable[[str, "dict[str, Any] | None"], None]


class HubStateError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7396: ``null`` removes a key, objects merge, anything else replaces."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge_patch(target[key], value)
        elif isinstance(value, dict):
            target[key] = merge_patch({}, value)
        else:
            target[key] = json.loads(json.dumps(value))
    return target


_DESIRED = "properties.desired"


def is_layered(content: dict[str, Any]) -> bool:
    """Whether deployment content is a layer (dotted ``properties.desired.<path>`` keys, no full ``$edgeAgent``
    desired properties) rather than a base deployment."""
    return _DESIRED not in (content.get("$edgeAgent") or {})


def merge_layer(content: dict[str, Any], layer: dict[str, Any]) -> dict[str, Any]:
    """``content`` with a layered deployment's content merged in: ``properties.desired`` replaces a module's
    desired properties, ``properties.desired.a.b`` sets that one path in them (IoT Hub's layered merge)."""
    merged = json.loads(json.dumps(content))
    for module, body in layer.items():
        for key, value in (body or {}).items():
            if key == _DESIRED:
                merged.setdefault(module, {})[_DESIRED] = json.loads(json.dumps(value))
            elif key.startswith(_DESIRED + "."):
                path = key[len(_DESIRED) + 1:].split(".")
                node = merged.setdefault(module, {}).setdefault(_DESIRED, {})
                for part in path[:-1]:
                    child = node.get(part)
                    if not isinstance(child, dict):
                        child = node[part] = {}
                    node = child
                node[path[-1]] = json.loads(json.dumps(value))
    return merged


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _etag() -> str:
    return base64.b64encode(uuid.uuid4().bytes[:6]).decode()


def _twin(device: str, module: str | None) -> dict[str, Any]:
    twin: dict[str, Any] = {"deviceId": device, "etag": _etag(), "version": 1, "tags": {},
                            "properties": {"desired": {"$version": 1}, "reported": {"$version": 1}}}
    if module:
        twin["moduleId"] = module
    return twin


def sas_signature(key: str, resource: str, expiry: int) -> str:
    message = f"{quote_plus(resource)}\n{expiry}".encode()
    return base64.b64encode(hmac.new(base64.b64decode(key), message, hashlib.sha256).digest()).decode()


class HubState:
    """Identities, twins, content and configurations; persisted in ``path`` (None: memory only)."""

    def __init__(self, path: Path | None = None, *, host: str = "localhost") -> None:
        self.path, self.host = path, host
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.devices: dict[str, dict[str, Any]] = {}
        self.configurations: dict[str, dict[str, Any]] = {}
        self._connections: dict[tuple[str, str | None], int] = {}
        self._desired_listeners: list[DesiredListener] = []
        self._content_listeners: list[ContentListener] = []
        self._dirty = threading.Event()
        self._closed = threading.Event()
        if path and path.exists():
            data = json.loads(path.read_text())
            self.devices, self.configurations = data.get("devices", {}), data.get("configurations", {})
        self._flusher: threading.Thread | None = None
        if path:
            self._flusher = threading.Thread(target=self._flush_loop, name="hub-state", daemon=True)
            self._flusher.start()

    # -- persistence
    def touch(self) -> None:
        self._dirty.set()
        self.changed.notify_all()

    def _flush_loop(self) -> None:
        while not self._closed.is_set():
            if self._dirty.wait(0.5):
                time.sleep(0.2)  # let a burst of reported patches land in one write
                self.save()

    def save(self) -> None:
        if self.path is None:
            return
        with self.lock:
            self._dirty.clear()
            data = json.dumps({"devices": self.devices, "configurations": self.configurations})
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds every identity's keys
        with os.fdopen(fd, "w") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)

    def close(self) -> None:
        self._closed.set()
        self.save()

    # -- listeners
    def on_desired(self, listener: DesiredListener) -> None:
        self._desired_listeners.append(listener)

    def on_content(self, listener: ContentListener) -> None:
        self._content_listeners.append(listener)

    # -- identities
    def add_device(self, device: str, *, edge: bool = False, primary: str | None = None,
                   secondary: str | None = None, status: str = "enabled") -> dict[str, Any]:
        if not _ID.fullmatch(device):
            raise HubStateError(400, "ArgumentInvalid", f"device id {device!r} is not one this hub accepts "
                                "(letters, digits and - . : _ = @ $ ! ( ) , ' up to 128 characters)")
        with self.lock:
            entry = self.devices.get(device)
            if entry is None:
                entry = self.devices[device] = {"modules": {}, "content": None, "twin": _twin(device, None),
                                                "generationId": uuid.uuid4().hex[:16]}
            entry.update(edge=edge, status=status, etag=_etag(), primaryKey=primary or entry.get("primaryKey")
                         or new_key(), secondaryKey=secondary or entry.get("secondaryKey") or new_key())
            entry["twin"]["capabilities"] = {"iotEdge": edge}
            entry["twin"]["status"] = status
            self.touch()
            return entry

    def add_module(self, device: str, module: str, *, primary: str | None = None, secondary: str | None = None,
                   managed_by: str | None = None) -> dict[str, Any]:
        if not _ID.fullmatch(module):
            raise HubStateError(400, "ArgumentInvalid", f"module id {module!r} is not one this hub accepts")
        with self.lock:
            entry = self.device(device)
            module_entry = entry["modules"].get(module)
            if module_entry is None:
                module_entry = entry["modules"][module] = {"twin": _twin(device, module),
                                                           "generationId": uuid.uuid4().hex[:16]}
            module_entry.update(etag=_etag(), managedBy=managed_by or module_entry.get("managedBy"),
                                primaryKey=primary or module_entry.get("primaryKey") or new_key(),
                                secondaryKey=secondary or module_entry.get("secondaryKey") or new_key())
            self.touch()
            return module_entry

    def device(self, device: str) -> dict[str, Any]:
        entry = self.devices.get(device)
        if entry is None:
            raise HubStateError(404, "DeviceNotFound", f"device '{device}' is not registered")
        return entry

    def identity(self, device: str, module: str | None) -> dict[str, Any]:
        entry = self.device(device)
        if module is None:
            return entry
        found = entry["modules"].get(module)
        if found is None:
            raise HubStateError(404, "ModuleNotFound", f"module '{module}' of device '{device}' is not registered")
        return found

    def remove(self, device: str, module: str | None = None) -> None:
        with self.lock:
            entry = self.device(device)
            if module is None:
                del self.devices[device]
            else:
                self.identity(device, module)
                del entry["modules"][module]
            self.touch()

    def connection_string(self, device: str, module: str | None = None) -> str:
        with self.lock:
            key = self.identity(device, module)["primaryKey"]
        return f"HostName={self.host};DeviceId={device};" + (f"ModuleId={module};" if module else "") + \
            f"SharedAccessKey={key}"

    def authenticate(self, username: str | None, password: str | None) -> tuple[str, str | None]:
        """The identity a device connection's SAS token proves; ``HubStateError`` when it proves none."""
        if not password or not password.startswith("SharedAccessSignature "):
            raise HubStateError(401, "IotHubUnauthorizedAccess", "no shared access signature")
        fields = dict(parse_qsl(password[len("SharedAccessSignature "):], keep_blank_values=True))
        resource = unquote(fields.get("sr", ""))
        parts = resource.split("/")
        if len(parts) not in (3, 5) or parts[0] != self.host or parts[1] != "devices" or \
                (len(parts) == 5 and parts[3] != "modules"):
            raise HubStateError(401, "IotHubUnauthorizedAccess", f"the token is for {resource!r}, not this hub")
        device, module = parts[2], parts[4] if len(parts) == 5 else None
        expected_user = f"{self.host}/{device}/" + (f"{module}/" if module else "")
        if not (username or "").startswith(expected_user):
            raise HubStateError(401, "IotHubUnauthorizedAccess", "the user name names another identity than the token")
        expiry = fields.get("se", "")
        if not expiry.isdigit() or int(expiry) < time.time():
            raise HubStateError(401, "IotHubUnauthorizedAccess", "the token has expired")
        with self.lock:
            try:
                entry = self.identity(device, module)
            except HubStateError:
                raise HubStateError(401, "IotHubUnauthorizedAccess", f"{expected_user} is not registered") from None
            keys = [entry["primaryKey"], entry["secondaryKey"]]
            if self.device(device).get("status") == "disabled":
                raise HubStateError(401, "IotHubUnauthorizedAccess", f"device '{device}' is disabled")
        given = fields.get("sig", "").encode()
        if not any(hmac.compare_digest(sas_signature(key, resource, int(expiry)).encode(), given) for key in keys):
            raise HubStateError(401, "IotHubUnauthorizedAccess", "the signature does not match the identity's keys")
        return device, module

    def set_connected(self, device: str, module: str | None, up: bool) -> None:
        """Counted: a reconnect may open the new connection before the old one is closed."""
        with self.lock:
            count = self._connections.get((device, module), 0) + (1 if up else -1)
            if count > 0:
                self._connections[(device, module)] = count
            else:
                self._connections.pop((device, module), None)
            self.changed.notify_all()

    def is_connected(self, device: str, module: str | None) -> bool:
        return self._connections.get((device, module), 0) > 0

    # -- twins
    def twin(self, device: str, module: str | None = None) -> dict[str, Any]:
        with self.lock:
            entry = self.identity(device, module)
            twin = json.loads(json.dumps(entry["twin"]))
            twin["connectionState"] = "Connected" if self.is_connected(device, module) else "Disconnected"
            return twin

    def twins(self, modules: bool) -> list[dict[str, Any]]:
        with self.lock:
            if modules:
                return [self.twin(d, m) for d, e in self.devices.items() for m in e["modules"]]
            return [self.twin(d) for d in self.devices]

    def update_twin(self, device: str, module: str | None, patch: dict[str, Any], *, replace: bool = False,
                    if_match: str | None = None) -> dict[str, Any]:
        """The service side's PATCH (merge tags and desired) or PUT (replace them) of a twin."""
        if not isinstance(patch, dict):
            raise HubStateError(400, "ArgumentInvalid", "a twin patch is a JSON object")
        desired_patch = (patch.get("properties") or {}).get("desired")
        with self.lock:
            entry = self.identity(device, module)
            twin = entry["twin"]
            match = (if_match or "").strip('"')
            if match not in ("", "*") and match != twin["etag"]:
                raise HubStateError(412, "PreconditionFailed", f"the twin's etag is {twin['etag']}, not {if_match}")
            tags = patch.get("tags")
            if replace:
                twin["tags"] = merge_patch({}, tags or {})
            elif isinstance(tags, dict):
                merge_patch(twin["tags"], tags)
            sent = None
            if isinstance(desired_patch, dict) or replace:
                desired = twin["properties"]["desired"]
                version = desired.get("$version", 1) + 1
                if replace:
                    old = {k for k in desired if not k.startswith("$")}
                    new = {k: v for k, v in (desired_patch or {}).items() if not k.startswith("$")}
                    sent = {**{k: None for k in old - set(new)}, **new}
                    twin["properties"]["desired"] = {**merge_patch({}, new), "$version": version}
                else:
                    sent = {k: v for k, v in (desired_patch or {}).items() if not k.startswith("$")}
                    merge_patch(desired, sent)
                    desired["$version"] = version
            twin["version"] += 1
            twin["etag"] = _etag()
            self.touch()
            result = self.twin(device, module)
            if module is None:
                self._reconcile()
        if sent is not None:
            for listener in self._desired_listeners:
                listener(device, module, sent, result["properties"]["desired"]["$version"])
        return result

    def patch_reported(self, device: str, module: str | None, patch: dict[str, Any]) -> int:
        with self.lock:
            twin = self.identity(device, module)["twin"]
            reported = twin["properties"]["reported"]
            merge_patch(reported, {k: v for k, v in patch.items() if not k.startswith("$")})
            reported["$version"] = reported.get("$version", 1) + 1
            reported["$metadata"] = {"$lastUpdated": now()}
            twin["version"] += 1
            self.touch()
            return reported["$version"]

    # -- deployments
    def apply_content(self, device: str, content: dict[str, Any]) -> None:
        """``applyConfigurationContent``: the device's modules get it now (until a configuration overrides it)."""
        with self.lock:
            entry = self.device(device)
            if not entry.get("edge"):
                raise HubStateError(400, "ArgumentInvalid", f"device '{device}' is not an IoT Edge device")
            entry["direct"] = content
            self._reconcile()

    def set_configuration(self, name: str, stored: dict[str, Any] | None) -> None:
        with self.lock:
            if stored is None:
                self.configurations.pop(name, None)
            else:
                self.configurations[name] = stored
            self._reconcile()

    def _reconcile(self) -> None:
        """Each edge device gets the highest-priority base deployment it matches (the newest on a tie), else what
        was applied to it directly, with every layered deployment it matches above that priority merged on top in
        priority order; the modules' twins get the result's desired properties."""
        ranked = sorted(self.configurations.values(), key=lambda c: (c.get("priority", 0), c.get("createdTimeUtc", "")),
                        reverse=True)
        conditions = {c["id"]: condition(c.get("targetCondition") or "") for c in ranked
                      if (c.get("content") or {}).get("modulesContent")}
        targeted: dict[str, int] = {c["id"]: 0 for c in ranked}
        applied: dict[str, int] = dict(targeted)
        changes = []
        for device, entry in self.devices.items():
            if not entry.get("edge"):
                continue
            matching = [c for c in ranked if c["id"] in conditions and conditions[c["id"]](entry["twin"])]
            for config in matching:
                targeted[config["id"]] += 1
            base = next((c for c in matching if not is_layered(c["content"]["modulesContent"])), None)
            chosen, sources = entry.get("direct"), []
            if base is not None:
                chosen, sources = base["content"]["modulesContent"], [base["id"]]
            if chosen is not None:
                floor = base.get("priority", 0) if base is not None else -1
                layers = [c for c in reversed(matching)
                          if is_layered(c["content"]["modulesContent"]) and c.get("priority", 0) > floor]
                for layer in layers:
                    chosen = merge_layer(chosen, layer["content"]["modulesContent"])
                    sources.append(layer["id"])
            for source in sources:
                applied[source] += 1
            if chosen != entry.get("content"):
                entry["content"], entry["contentSource"] = chosen, sources[0] if len(sources) == 1 else (
                    sources or None)
                changes.append((device, chosen))
        for config in ranked:
            config.setdefault("systemMetrics", {}).setdefault("results", {}).update(
                targetedCount=targeted[config["id"]], appliedCount=applied[config["id"]])
        for device, content in changes:
            self._desired_from_content(device, content)
        self.touch()
        for device, content in changes:
            for listener in self._content_listeners:
                listener(device, content)

    def metric_results(self, config: dict[str, Any]) -> dict[str, int]:
        """A configuration's custom metrics: each query of ``metrics.queries`` run over the twins, as a count."""
        out = {}
        for name, text in ((config.get("metrics") or {}).get("queries") or {}).items():
            query = parse_query(text)
            out[name] = len(query.run(self.twins(modules=query.source == "devices.modules")))
        return out

    def _desired_from_content(self, device: str, content: dict[str, Any] | None) -> None:
        for module, body in (content or {}).items():
            desired = (body or {}).get("properties.desired")
            if not isinstance(desired, dict):
                continue
            if module not in self.devices[device]["modules"]:
                self.add_module(device, module, managed_by="IotEdge" if module.startswith("$") else None)
            twin = self.devices[device]["modules"][module]["twin"]
            old = twin["properties"]["desired"]
            if {k: v for k, v in old.items() if not k.startswith("$")} == desired:
                continue
            new = {**merge_patch({}, desired), "$version": old.get("$version", 1) + 1}
            sent = {**{k: None for k in old if not k.startswith("$") and k not in desired}, **desired}
            twin["properties"]["desired"] = new
            twin["version"] += 1
            for listener in self._desired_listeners:
                listener(device, module, sent, new["$version"])
