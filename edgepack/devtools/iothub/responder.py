"""IoT Hub's side of the device MQTT topics, for every identity, over one paho connection to the broker behind the
gateway (which scopes each identity's ``$iothub/`` topics under ``$hub/devices/D[/modules/M]/``).

It answers twin reads and reported patches from the hub's state, pushes desired patches when the state changes,
invokes direct methods and waits for their answers, publishes module inputs (QoS 1, with IoT Hub's property
bag) and takes what devices and modules send: by the routes of the device's deployment (``$edgeHub``'s desired
``routes``; without a deployment, everything goes upstream) into another module's input or ``$upstream``, where
it is kept in memory and, with a state folder, appended to ``upstream.jsonl``.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import ssl
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl, quote, urlencode

import paho.mqtt.client as mqtt

from edgepack.deploy.iotedge import Route, parse_route
from edgepack.devtools.iothub.gateway import scope, unscope
from edgepack.devtools.iothub.query import condition
from edgepack.devtools.iothub.state import HubState, HubStateError

log = logging.getLogger(__name__)


def property_bag(topic_tail: str) -> dict[str, str]:
    """The properties encoded in the last segment of a telemetry topic."""
    return dict(parse_qsl(topic_tail, keep_blank_values=True))


@dataclass(frozen=True)
class HubMessage:
    """A message a module sent to an output (or a device sent as telemetry)."""

    device: str
    module: str | None
    output: str | None
    body: bytes
    message_id: str | None
    correlation_id: str | None
    content_type: str | None
    properties: dict[str, str] = field(default_factory=dict)
    received: float = 0.0

    def json(self) -> Any:
        return json.loads(self.body)

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        try:
            record["body"] = json.loads(self.body)
        except ValueError:
            record["body"], record["bodyBase64"] = None, base64.b64encode(self.body).decode()
        return record


class HubResponder:
    """Plays IoT Hub for every identity in ``state`` on the broker at 127.0.0.1:``port`` (plain, behind the
    gateway; ``ca_file`` for a TLS broker)."""

    def __init__(self, port: int, state: HubState, *, ca_file: str | None = None,
                 upstream_log: Path | None = None) -> None:
        self.state = state
        self.messages: list[HubMessage] = []
        self._upstream_log = upstream_log
        self._rids = itertools.count(1)
        self._methods: dict[str, tuple[int, Any] | None] = {}
        self._pending: dict[tuple[str, str], list[tuple[str, bytes | str, dict[str, str]]]] = {}
        self._client = mqtt.Client(client_id=f"edgepack-hub-{uuid.uuid4().hex[:8]}", clean_session=True)
        if ca_file:
            self._client.tls_set_context(ssl.create_default_context(cafile=ca_file))
        self._client.on_message = self._on_message
        self._client.on_connect = self._on_connect
        self._subscribed = threading.Event()
        self._port = port
        state.on_desired(self._push_desired)

    def start(self) -> "HubResponder":
        self._client.connect("localhost", self._port, keepalive=30)
        self._client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("the hub responder could not subscribe on the broker")
        return self

    @property
    def connected(self) -> bool:
        return self._client.is_connected()

    def stop(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: int) -> None:
        client.subscribe([("$hub/#", 1), ("devices/+/modules/+/messages/events/#", 1),
                          ("devices/+/messages/events/#", 1)])
        self._subscribed.set()

    # -- incoming
    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self._dispatch(msg.topic, msg.payload)
        except Exception:  # noqa: BLE001 - one bad message must not stop the hub
            log.exception("the local hub could not handle a message on %s", msg.topic)

    def _dispatch(self, topic: str, payload: bytes) -> None:
        if "/messages/events/" in topic or topic.endswith("/messages/events"):
            self._telemetry(topic, payload)
            return
        scoped = unscope(topic)
        if scoped is None:
            return
        device, module, rest = scoped
        prefix = scope(device, module)
        if rest.startswith("twin/GET/"):
            rid = property_bag(rest.split("?", 1)[1])["$rid"]
            try:
                twin = self.state.twin(device, module)
                status, body = 200, json.dumps(twin["properties"])
            except HubStateError as exc:
                status, body = exc.status, json.dumps({"Message": str(exc)})
            self._client.publish(f"{prefix}twin/res/{status}/?$rid={rid}", body, qos=0)
        elif rest.startswith("twin/PATCH/properties/reported/"):
            rid = property_bag(rest.split("?", 1)[1])["$rid"]
            try:
                patch = json.loads(payload or b"{}")
                if not isinstance(patch, dict):
                    raise ValueError("not an object")
                version = self.state.patch_reported(device, module, patch)
                self._client.publish(f"{prefix}twin/res/204/?$rid={rid}&$version={version}", b"", qos=0)
            except ValueError:
                self._client.publish(f"{prefix}twin/res/400/?$rid={rid}", b"", qos=0)
        elif rest.startswith("methods/res/"):
            status, _, query = rest[len("methods/res/"):].partition("/?")
            rid = property_bag(query)["$rid"]
            with self.state.changed:
                if rid in self._methods:
                    self._methods[rid] = (int(status), json.loads(payload) if payload else None)
                    self.state.changed.notify_all()

    def _telemetry(self, topic: str, payload: bytes) -> None:
        head, _, tail = topic.partition("/messages/events")
        parts = head.split("/")
        props = property_bag(tail.lstrip("/"))
        system = {k: props.pop(k) for k in list(props) if k.startswith("$.")}
        message = HubMessage(device=parts[1], module=parts[3] if len(parts) > 3 else None,
                             output=system.get("$.on"), body=bytes(payload), message_id=system.get("$.mid"),
                             correlation_id=system.get("$.cid"), content_type=system.get("$.ct"), properties=props,
                             received=time.time())
        upstream = False
        for route in self._routes(message.device):
            if not route.takes(message.module, message.output) or not self._where(route, message):
                continue
            if route.sink_module is None:
                upstream = True
            else:
                self.send_input(message.device, route.sink_module, route.sink_input or "", message.body,
                                message_id=message.message_id, correlation_id=message.correlation_id,
                                content_type=message.content_type or "application/json", properties=props)
        if upstream:
            self._upstream(message)

    def _routes(self, device: str) -> list[Route]:
        with self.state.lock:
            content = (self.state.devices.get(device) or {}).get("content")
        if not content:
            return [Route("/messages/*", None, None, None)]
        routes = ((content.get("$edgeHub") or {}).get("properties.desired") or {}).get("routes") or {}
        out = []
        for name, spec in routes.items():
            text = spec.get("route") if isinstance(spec, dict) else spec
            try:
                out.append(parse_route(name, str(text)))
            except Exception as exc:  # noqa: BLE001 - a route the hub cannot read takes nothing
                log.warning("route %s of %s ignored: %s", name, device, exc)
        return out

    @staticmethod
    def _where(route: Route, message: HubMessage) -> bool:
        if not route.condition:
            return True
        doc: dict[str, Any] = dict(message.properties)
        try:
            doc["$body"] = message.json()
        except ValueError:
            pass
        try:
            return condition(route.condition)(doc)
        except ValueError:
            return False

    def _upstream(self, message: HubMessage) -> None:
        if self._upstream_log is not None:
            with open(self._upstream_log, "a") as handle:
                handle.write(json.dumps(message.to_record()) + "\n")
        with self.state.changed:
            self.messages.append(message)
            self.state.changed.notify_all()

    # -- outgoing
    def send_input(self, device: str, module: str, input_name: str, body: bytes | str, *,
                   message_id: str | None = None, correlation_id: str | None = None,
                   content_type: str = "application/json", properties: dict[str, str] | None = None) -> str:
        """Publish one message to a module's input (QoS 1); returns its message id. Until the module has once
        subscribed to its inputs (its broker session then keeps them), messages wait here, as edgeHub keeps
        them for a module that has not started yet."""
        message_id = message_id or str(uuid.uuid4())
        bag = {"$.mid": message_id, "$.ct": content_type, "$.ce": "utf-8", **(properties or {})}
        if correlation_id:
            bag["$.cid"] = correlation_id
        with self.state.lock:
            entry = self.state.devices.get(device, {}).get("modules", {}).get(module)
            if entry is None or not entry.get("inputsSubscribed"):
                self._pending.setdefault((device, module), []).append((input_name, body, bag))
                return message_id
        self._publish_input(device, module, input_name, body, bag)
        return message_id

    def _publish_input(self, device: str, module: str, input_name: str, body: bytes | str,
                       bag: dict[str, str]) -> None:
        topic = f"devices/{device}/modules/{module}/inputs/{input_name}/{urlencode(bag, quote_via=quote)}"
        self._client.publish(topic, body, qos=1)

    def subscribed(self, device: str, module: str | None, topics: list[str]) -> None:
        """The gateway saw ``device/module`` subscribe: once it takes its inputs, what waited for it is sent."""
        if module is None or not any(t.startswith(f"devices/{device}/modules/{module}/inputs") for t in topics):
            return
        with self.state.lock:
            entry = self.state.devices.get(device, {}).get("modules", {}).get(module)
            if entry is None:
                return
            if not entry.get("inputsSubscribed"):
                entry["inputsSubscribed"] = True
                self.state.touch()
            waiting = self._pending.pop((device, module), [])
            for input_name, body, bag in waiting:
                self._publish_input(device, module, input_name, body, bag)

    def _push_desired(self, device: str, module: str | None, patch: dict[str, Any], version: int) -> None:
        self._client.publish(f"{scope(device, module)}twin/PATCH/properties/desired/?$version={version}",
                             json.dumps({**patch, "$version": version}), qos=0)

    def invoke(self, device: str, module: str | None, method: str, payload: Any = None,
               timeout: float = 10.0) -> tuple[int, Any]:
        """Call a direct method; returns (status, payload).

        Raises:
            HubStateError: the identity is unknown or not connected (404), or it did not answer in time (504).
        """
        self.state.identity(device, module)
        if not self.state.is_connected(device, module):
            raise HubStateError(404, "DeviceNotOnline", f"{device}{'/' + module if module else ''} is not connected")
        rid = str(next(self._rids))
        with self.state.changed:
            self._methods[rid] = None
        self._client.publish(f"{scope(device, module)}methods/POST/{method}/?$rid={rid}", json.dumps(payload), qos=0)
        with self.state.changed:
            try:
                if not self.state.changed.wait_for(lambda: self._methods.get(rid) is not None, timeout):
                    raise HubStateError(504, "GatewayTimeout", f"method {method} got no answer in {timeout:g} s")
                answer = self._methods[rid]
            finally:
                self._methods.pop(rid, None)
        assert answer is not None
        return answer

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` holds (checked whenever something changes, and twice a second)."""
        deadline = time.monotonic() + timeout
        with self.state.changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.state.changed.wait(min(left, 0.5))
        return True

    def identity(self, device: str, module: str | None) -> "IdentityView":
        return IdentityView(self, device, module)


class IdentityView:
    """One identity's side of the hub, for tests and scripts: its twin (live), what it sent upstream, its inputs
    and methods."""

    def __init__(self, responder: HubResponder, device: str, module: str | None) -> None:
        self.responder, self.device, self.module = responder, device, module

    @property
    def desired(self) -> dict[str, Any]:
        return self.responder.state.identity(self.device, self.module)["twin"]["properties"]["desired"]

    @property
    def reported(self) -> dict[str, Any]:
        return self.responder.state.identity(self.device, self.module)["twin"]["properties"]["reported"]

    @property
    def messages(self) -> list[HubMessage]:
        return [m for m in self.responder.messages if m.device == self.device and
                (self.module is None or m.module == self.module)]

    @property
    def connected(self) -> bool:
        return self.responder.connected

    def send_input(self, input_name: str, body: bytes | str, **kwargs: Any) -> str:
        assert self.module, "inputs are a module's"
        return self.responder.send_input(self.device, self.module, input_name, body, **kwargs)

    def patch_desired(self, patch: dict[str, Any]) -> int:
        twin = self.responder.state.update_twin(self.device, self.module, {"properties": {"desired": patch}})
        return twin["properties"]["desired"]["$version"]

    def invoke(self, method: str, payload: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
        return self.responder.invoke(self.device, self.module, method, payload, timeout)

    def wait_for(self, predicate: Callable[["IdentityView"], bool], timeout: float) -> bool:
        return self.responder.wait_for(lambda: predicate(self), timeout)
