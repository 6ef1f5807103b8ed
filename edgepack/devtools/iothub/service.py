"""The local hub's service side: the part of IoT Hub's service REST API that deployments and fleet tools use,
over HTTPS on loopback, for the real azure-iot-hub clients (``IoTHubRegistryManager``,
``IoTHubConfigurationManager``) pointed at ``HostName=localhost:PORT``. Development tooling, never in images.

Covered: shared-access-signature checks (the policy key, the ``sr`` host, expiry; compared in constant time);
device and module identities (``PUT/GET/DELETE /devices/{id}[/modules/{mid}]``, ``GET /devices/{id}/modules``);
twins (``GET``, ``PATCH`` as a JSON merge patch of tags and desired properties, ``PUT`` to replace them, with
``If-Match`` etags; ``/twins/{id}[/modules/{mid}]``); direct methods (``POST /twins/{id}[/modules/{mid}]/methods``,
answered by the connected device, 404 ``DeviceNotOnline`` otherwise); twin queries (``POST /devices/query``, see
``query``); ``POST /devices/{id}/applyConfigurationContent``; configurations (``PUT/GET/DELETE
/configurations/{id}``, content fixed once created, ``If-Match`` for updates, ``GET /configurations``) with
target conditions and priorities applied to the devices and their counts in ``systemMetrics``. Errors answer
IoT Hub's JSON shape ``{"Message": "ErrorCode:...;...", "ExceptionMessage": ...}``.

Side effects: a thread serving HTTPS on 127.0.0.1.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import ssl
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote_plus, unquote, urlsplit

from edgepack.devtools.iothub.certs import HubCertificates
from edgepack.devtools.iothub.query import QueryError, condition, parse_query
from edgepack.devtools.iothub.state import HubState, HubStateError, now

POLICY = "iothubowner"
_ROUTES = [(method, re.compile(pattern), name) for method, pattern, name in [
    ("POST", r"^/devices/query$", "_query"),
    ("POST", r"^/devices/([^/]+)/applyConfigurationContent$", "_apply"),
    ("GET", r"^/devices/([^/]+)/modules$", "_modules"),
    ("*", r"^/devices/([^/]+)/modules/([^/]+)$", "_identity"),
    ("*", r"^/devices/([^/]+)()$", "_identity"),
    ("POST", r"^/twins/([^/]+)/modules/([^/]+)/methods$", "_method"),
    ("POST", r"^/twins/([^/]+)()/methods$", "_method"),
    ("*", r"^/twins/([^/]+)/modules/([^/]+)$", "_twin"),
    ("*", r"^/twins/([^/]+)()$", "_twin"),
    ("GET", r"^/configurations$", "_configurations"),
    ("POST", r"^/edgepack/devices/([^/]+)/modules/([^/]+)/inputs/([^/]+)$", "_send"),
    ("POST", r"^/edgepack/inputs$", "_send_many"),
    ("*", r"^/configurations/([^/]+)$", "_configuration"),
]]
_NEVER = "0001-01-01T00:00:00Z"



class HubService:
    """Serves IoT Hub's service API on 127.0.0.1:``port`` (0: any free port) over ``state``; direct methods go
    through ``invoke(device, module, method, payload, timeout)`` (the hub's responder)."""

    def __init__(self, certs: HubCertificates, state: HubState | None = None, *, port: int = 0,
                 key: bytes | None = None, invoke: Any = None, send: Any = None) -> None:
        self.key = key or hashlib.sha256(uuid.uuid4().bytes).digest()
        self.state = state or HubState()
        self._invoke, self._send_input = invoke, send
        # Every request as it came (method, path with query, headers, body) when a list: tests assert what a
        # client would send to Azure IoT Hub here, at the transport.
        self.recorded: list[tuple[str, str, dict[str, str], bytes]] | None = None
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if service.recorded is not None:
                    service.recorded.append((method, self.path, dict(self.headers), body))
                try:
                    service._authorize(self.headers.get("Authorization", ""), self.headers.get("Host", ""))
                    status, answer, headers = service.handle(method, self.path, body, dict(self.headers))
                except HubStateError as exc:
                    status, headers = exc.status, {}
                    answer = {"Message": f"ErrorCode:{exc.code};{exc}", "ExceptionMessage": str(exc)}
                data = b"" if answer is None else json.dumps(answer).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if data:
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_PUT(self) -> None:
                self._handle("PUT")

            def do_PATCH(self) -> None:
                self._handle("PATCH")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(certs.cert), str(certs.key))
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self.port = self._httpd.server_address[1]
        self.host = f"localhost:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-service", daemon=True)

    @property
    def connection_string(self) -> str:
        return (f"HostName={self.host};SharedAccessKeyName={POLICY};"
                f"SharedAccessKey={base64.b64encode(self.key).decode()}")

    def start(self) -> "HubService":
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()

    def add_device(self, device: str, *, edge: bool = True) -> None:
        self.state.add_device(device, edge=edge)

    # -- auth
    def _authorize(self, header: str, host: str) -> None:
        if not header.startswith("SharedAccessSignature "):
            raise HubStateError(401, "IotHubUnauthorizedAccess", "no shared access signature")
        fields = dict(parse_qsl(header[len("SharedAccessSignature "):], keep_blank_values=True))
        resource, expiry, signature = fields.get("sr", ""), fields.get("se", ""), fields.get("sig", "")
        if fields.get("skn") != POLICY or unquote(resource).split("/")[0] != self.host:
            raise HubStateError(401, "IotHubUnauthorizedAccess", "the signature is for another hub or policy")
        if not expiry.isdigit() or int(expiry) < time.time():
            raise HubStateError(401, "IotHubUnauthorizedAccess", "the signature has expired")
        message = f"{quote_plus(unquote(resource))}\n{expiry}".encode()
        expected = base64.b64encode(hmac.new(self.key, message, hashlib.sha256).digest()).decode()
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise HubStateError(401, "IotHubUnauthorizedAccess", "the signature does not match the policy's key")

    # -- routes
    def handle(self, method: str, target: str, body: bytes,
               headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        path = urlsplit(target).path
        try:
            data = json.loads(body) if body else None
        except ValueError:
            raise HubStateError(400, "ArgumentInvalid", "the request body is not JSON") from None
        lowered = {k.lower(): v for k, v in headers.items()}
        for verb, pattern, name in _ROUTES:
            match = pattern.match(path)
            if match and verb in ("*", method):
                args = [unquote(g) if g else None for g in match.groups()]
                return getattr(self, name)(method, *args, data=data, headers=lowered)
        raise HubStateError(404, "NotFound", f"{method} {path} is not something this local hub serves")

    def _identity(self, method: str, device: str, module: str | None, *, data: Any,
                  headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        state = self.state
        if method == "GET":
            with state.lock:
                return 200, self._describe(device, module), {}
        if method == "DELETE":
            with state.lock:
                etag = state.identity(device, module)["etag"]
                match = headers.get("if-match", "*").strip('"')
                if match not in ("*", etag):
                    raise HubStateError(412, "PreconditionFailed", f"the identity's etag is {etag}, not {match}")
                state.remove(device, module)
            return 204, None, {}
        if method != "PUT" or not isinstance(data, dict):
            raise HubStateError(400, "ArgumentInvalid", "an identity is a JSON object")
        auth = (data.get("authentication") or {})
        if auth.get("type", "sas") != "sas":
            raise HubStateError(400, "ArgumentInvalid", "this hub knows symmetric keys (type sas) only")
        keys = auth.get("symmetricKey") or {}
        with state.lock:
            exists = (device in state.devices) if module is None else \
                (device in state.devices and module in state.devices[device]["modules"])
            if exists and headers.get("if-match") is None:
                name = device + (f"/{module}" if module else "")
                raise HubStateError(409, "DeviceAlreadyExists", f"{name} exists already")
            if module is None:
                state.add_device(device, edge=bool((data.get("capabilities") or {}).get("iotEdge")),
                                 primary=keys.get("primaryKey"), secondary=keys.get("secondaryKey"),
                                 status=data.get("status") or "enabled")
            else:
                state.add_module(device, module, primary=keys.get("primaryKey"),
                                 secondary=keys.get("secondaryKey"), managed_by=data.get("managedBy"))
            return 200, self._describe(device, module), {}

    def _describe(self, device: str, module: str | None) -> dict[str, Any]:
        entry = self.state.identity(device, module)
        out: dict[str, Any] = {
            "deviceId": device, "generationId": entry["generationId"], "etag": entry["etag"],
            "connectionState": "Connected" if self.state.is_connected(device, module) else "Disconnected",
            "connectionStateUpdatedTime": _NEVER, "lastActivityTime": _NEVER, "cloudToDeviceMessageCount": 0,
            "authentication": {"type": "sas", "symmetricKey": {"primaryKey": entry["primaryKey"],
                                                               "secondaryKey": entry["secondaryKey"]},
                               "x509Thumbprint": {"primaryThumbprint": None, "secondaryThumbprint": None}}}
        if module is None:
            out.update(status=entry["status"], statusReason=None, statusUpdatedTime=_NEVER,
                       capabilities={"iotEdge": bool(entry.get("edge"))})
        else:
            out.update(moduleId=module, managedBy=entry.get("managedBy"))
        return out

    def _modules(self, method: str, device: str, *, data: Any,
                 headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        with self.state.lock:
            return 200, [self._describe(device, m) for m in self.state.device(device)["modules"]], {}

    def _twin(self, method: str, device: str, module: str | None, *, data: Any,
              headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        if method == "GET":
            return 200, self.state.twin(device, module), {}
        if method not in ("PATCH", "PUT"):
            raise HubStateError(405, "MethodNotAllowed", f"{method} on a twin")
        return 200, self.state.update_twin(device, module, data, replace=method == "PUT",
                                           if_match=headers.get("if-match")), {}

    def _method(self, method: str, device: str, module: str | None, *, data: Any,
                headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        if not isinstance(data, dict) or not data.get("methodName"):
            raise HubStateError(400, "ArgumentInvalid", "a method call names methodName")
        if self._invoke is None:
            raise HubStateError(404, "DeviceNotOnline", "this hub has no device side")
        timeout = float(data.get("responseTimeoutInSeconds") or 30)
        status, payload = self._invoke(device, module, data["methodName"], data.get("payload"), timeout)
        return 200, {"status": status, "payload": payload}, {}

    def _query(self, method: str, *, data: Any, headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        text = (data or {}).get("query") if isinstance(data, dict) else None
        if not text:
            raise HubStateError(400, "ArgumentInvalid", "a query body is {\"query\": \"SELECT ...\"}")
        try:
            query = parse_query(text)
        except QueryError as exc:
            raise HubStateError(400, "SqlQueryInvalid", str(exc)) from None
        rows = query.run(self.state.twins(modules=query.source == "devices.modules"))
        size = int(headers.get("x-ms-max-item-count") or 100)
        start = int(headers.get("x-ms-continuation") or 0)
        page = rows[start:start + size]
        more = str(start + size) if start + size < len(rows) else ""
        kind = "twin" if not query.fields and not query.count_as else "raw"
        return 200, page, {"x-ms-item-type": kind, "x-ms-continuation": more}

    def _send(self, method: str, device: str, module: str, input_name: str, *, data: Any,
              headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        """edgepack's own (IoT Hub has no such call): ``{"messages": [{"body": ..., "messageId": ...}]}`` into a
        module's input, as another module's output routed there would arrive."""
        messages = self._messages(data, '{"messages": [{"body": ...}, ...]}')
        self.state.identity(device, module)
        return 200, {"messageIds": [self._deliver(device, module, input_name, m) for m in messages]}, {}

    def _send_many(self, method: str, *, data: Any, headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        """edgepack's own, for many modules at once (a simulated fleet): ``{"messages": [{"device": ...,
        "module": ..., "input": ..., "body": ...}]}``; every identity is checked before anything is sent."""
        messages = self._messages(data, '{"messages": [{"device": ..., "module": ..., "input": ..., "body": ...}]}',
                                  keys=("device", "module", "input"))
        for m in messages:
            self.state.identity(str(m["device"]), str(m["module"]))
        ids = [self._deliver(str(m["device"]), str(m["module"]), str(m["input"]), m) for m in messages]
        return 200, {"messageIds": ids}, {}

    def _messages(self, data: Any, shape: str, keys: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        messages = (data or {}).get("messages") if isinstance(data, dict) else None
        if not isinstance(messages, list) or self._send_input is None or not all(
                isinstance(m, dict) and all(k in m for k in ("body", *keys)) for m in messages):
            raise HubStateError(400, "ArgumentInvalid", f"the body is {shape}")
        return messages

    def _deliver(self, device: str, module: str, input_name: str, message: dict[str, Any]) -> str:
        assert self._send_input is not None
        body = message["body"]
        return self._send_input(device, module, input_name, body if isinstance(body, str) else json.dumps(body),
                                message_id=message.get("messageId"), correlation_id=message.get("correlationId"),
                                properties=message.get("properties") or None)

    def _apply(self, method: str, device: str, *, data: Any,
               headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        content = (data or {}).get("modulesContent") if isinstance(data, dict) else None
        if not isinstance(content, dict) or "$edgeAgent" not in content or "$edgeHub" not in content:
            raise HubStateError(400, "ArgumentInvalid", "modulesContent needs $edgeAgent and $edgeHub")
        self.state.apply_content(device, content)
        return 204, None, {}

    def _configurations(self, method: str, *, data: Any,
                        headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        with self.state.lock:
            return 200, [self._with_metrics(c) for c in self.state.configurations.values()], {}

    def _with_metrics(self, config: dict[str, Any]) -> dict[str, Any]:
        """A configuration as GET answers it: its custom metrics' counts computed now."""
        out = json.loads(json.dumps(config))
        out.setdefault("metrics", {"queries": {}})["results"] = self.state.metric_results(config)
        return out

    def _configuration(self, method: str, name: str, *, data: Any,
                       headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        with self.state.lock:
            existing = self.state.configurations.get(name)
            if method == "GET":
                if existing is None:
                    raise HubStateError(404, "ConfigurationNotFound", f"configuration '{name}' does not exist")
                return 200, self._with_metrics(existing), {}
            if method == "DELETE":
                if existing is None:
                    raise HubStateError(404, "ConfigurationNotFound", f"configuration '{name}' does not exist")
                self.state.set_configuration(name, None)
                return 204, None, {}
            if method != "PUT" or not isinstance(data, dict):
                raise HubStateError(400, "ArgumentInvalid", "a configuration is a JSON object")
            match = headers.get("if-match")
            if existing is not None:
                if not match:
                    raise HubStateError(409, "ConfigurationAlreadyExists", f"configuration '{name}' exists already")
                if match.strip('"') not in ("*", existing["etag"]):
                    raise HubStateError(412, "PreconditionFailed", "the etag does not match")
                if data.get("content") != existing["content"]:
                    raise HubStateError(400, "ArgumentInvalid", "a configuration's content cannot change")
            try:
                condition(data.get("targetCondition") or "")
                for query in ((data.get("metrics") or {}).get("queries") or {}).values():
                    parse_query(query)
            except QueryError as exc:
                raise HubStateError(400, "ArgumentInvalid", f"targetCondition or metrics: {exc}") from None
            stored = {**(existing or {"createdTimeUtc": now(), "systemMetrics": {"results": {}, "queries": {}}}),
                      "id": name, "schemaVersion": data.get("schemaVersion", "1.0"),
                      "labels": data.get("labels") or {}, "content": data.get("content") or {},
                      "targetCondition": data.get("targetCondition", ""), "priority": int(data.get("priority") or 0),
                      "metrics": data.get("metrics") or {"queries": {}}, "lastUpdatedTimeUtc": now(),
                      "etag": base64.b64encode(uuid.uuid4().bytes[:6]).decode()}
            self.state.set_configuration(name, stored)
            return (200 if existing else 201), self.state.configurations[name], {}
