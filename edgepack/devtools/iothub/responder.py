"""IoT Hub's side of the device MQTT topics, for one module identity, over a paho connection to the broker.

It answers twin reads (``$iothub/twin/GET``) and reported patches (JSON merge patch, ``$version`` bumped),
pushes desired patches, invokes direct methods and waits for their answers, publishes module inputs (QoS 1,
with IoT Hub's property bag) and collects what the module sends to its outputs. A plain broker does not scope
``$iothub/...`` to the connection that asked, so one responder serves one identity per broker.
"""

from __future__ import annotations

import itertools
import json
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import paho.mqtt.client as mqtt


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7396: ``null`` removes a key, objects merge, anything else replaces."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge_patch(target[key], value)
        else:
            target[key] = json.loads(json.dumps(value))
    return target


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

    def json(self) -> Any:
        return json.loads(self.body)


class HubResponder:
    """Plays IoT Hub for ``device/module`` on the broker at 127.0.0.1:``port``."""

    def __init__(self, port: int, ca_file: str, device: str, module: str) -> None:
        self.device, self.module = device, module
        self.desired: dict[str, Any] = {"$version": 1}
        self.reported: dict[str, Any] = {"$version": 1}
        self.messages: list[HubMessage] = []
        self._lock = threading.Condition()
        self._rids = itertools.count(1)
        self._methods: dict[str, tuple[int, Any] | None] = {}
        self._client = mqtt.Client(client_id=f"edgepack-hub-{uuid.uuid4().hex[:8]}", clean_session=True)
        self._client.tls_set_context(ssl.create_default_context(cafile=ca_file))
        self._client.on_message = self._on_message
        self._client.on_connect = self._on_connect
        self._subscribed = threading.Event()
        self._port = port

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
        client.subscribe([("$iothub/twin/GET/#", 1), ("$iothub/twin/PATCH/properties/reported/#", 1),
                          ("$iothub/methods/res/#", 1), ("devices/+/modules/+/messages/events/#", 1),
                          ("devices/+/messages/events/#", 1)])
        self._subscribed.set()

    # -- incoming
    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        topic = msg.topic
        if topic.startswith("$iothub/twin/GET/"):
            rid = property_bag(topic.split("?", 1)[1])["$rid"]
            with self._lock:
                body = json.dumps({"desired": self.desired, "reported": self.reported})
            client.publish(f"$iothub/twin/res/200/?$rid={rid}", body, qos=0)
        elif topic.startswith("$iothub/twin/PATCH/properties/reported/"):
            rid = property_bag(topic.split("?", 1)[1])["$rid"]
            with self._lock:
                merge_patch(self.reported, json.loads(msg.payload or b"{}"))
                self.reported["$version"] = self.reported.get("$version", 1) + 1
                version = self.reported["$version"]
                self._lock.notify_all()
            client.publish(f"$iothub/twin/res/204/?$rid={rid}&$version={version}", b"", qos=0)
        elif topic.startswith("$iothub/methods/res/"):
            status, _, query = topic[len("$iothub/methods/res/"):].partition("/?")
            rid = property_bag(query)["$rid"]
            with self._lock:
                self._methods[rid] = (int(status), json.loads(msg.payload) if msg.payload else None)
                self._lock.notify_all()
        elif "/messages/events/" in topic:
            self._telemetry(topic, msg.payload)

    def _telemetry(self, topic: str, payload: bytes) -> None:
        head, _, tail = topic.partition("/messages/events/")
        parts = head.split("/")
        props = property_bag(tail)
        system = {k: props.pop(k) for k in list(props) if k.startswith("$.")}
        message = HubMessage(device=parts[1], module=parts[3] if len(parts) > 3 else None,
                             output=system.get("$.on"), body=bytes(payload), message_id=system.get("$.mid"),
                             correlation_id=system.get("$.cid"), content_type=system.get("$.ct"), properties=props)
        with self._lock:
            self.messages.append(message)
            self._lock.notify_all()

    # -- outgoing
    def send_input(self, input_name: str, body: bytes | str, *, message_id: str | None = None,
                   correlation_id: str | None = None, content_type: str = "application/json",
                   properties: dict[str, str] | None = None) -> str:
        """Publish one message to the module's input (QoS 1); returns its message id."""
        message_id = message_id or str(uuid.uuid4())
        bag = {"$.mid": message_id, "$.ct": content_type, "$.ce": "utf-8", **(properties or {})}
        if correlation_id:
            bag["$.cid"] = correlation_id
        topic = f"devices/{self.device}/modules/{self.module}/inputs/{input_name}/{urlencode(bag, quote_via=quote)}"
        self._client.publish(topic, body, qos=1)
        return message_id

    def patch_desired(self, patch: dict[str, Any]) -> int:
        """Merge ``patch`` into the desired properties and push it to the module; returns the new ``$version``."""
        with self._lock:
            merge_patch(self.desired, patch)
            self.desired["$version"] = self.desired.get("$version", 1) + 1
            version = self.desired["$version"]
        self._client.publish(f"$iothub/twin/PATCH/properties/desired/?$version={version}",
                             json.dumps({**patch, "$version": version}), qos=0)
        return version

    def invoke(self, method: str, payload: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
        """Call a direct method; returns (status, payload)."""
        rid = str(next(self._rids))
        with self._lock:
            self._methods[rid] = None
        self._client.publish(f"$iothub/methods/POST/{method}/?$rid={rid}", json.dumps(payload), qos=0)
        with self._lock:
            if not self._lock.wait_for(lambda: self._methods.get(rid) is not None, timeout):
                raise TimeoutError(f"method {method} got no answer in {timeout:.0f} s")
            answer = self._methods.pop(rid)
        assert answer is not None
        return answer

    def wait_for(self, predicate: Any, timeout: float) -> bool:
        """Wait until ``predicate(self)`` holds (checked whenever something arrives)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.5))
        return True
