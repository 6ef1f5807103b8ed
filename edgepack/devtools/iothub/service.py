"""The local hub's service side: the part of IoT Hub's service REST API that deployments use, over HTTPS on
loopback, for the real azure-iot-hub client (``IoTHubConfigurationManager``) pointed at
``HostName=localhost:PORT``. Development tooling, never in images.

Covered: shared-access-signature checks (the policy key, the ``sr`` host, expiry; compared in constant time),
``POST /devices/{id}/applyConfigurationContent``, ``PUT/GET/DELETE /configurations/{id}`` (content fixed once
created, as in IoT Hub; ``If-Match`` for updates) and ``GET /configurations``. Devices are registered with
``add_device``. Errors answer IoT Hub's JSON shape ``{"Message": "ErrorCode:...;...", "ExceptionMessage": ...}``.

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
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote_plus, unquote, urlsplit

from edgepack.devtools.iothub.certs import HubCertificates

POLICY = "iothubowner"
_CONFIG = re.compile(r"^/configurations/([^/?]+)$")
_APPLY = re.compile(r"^/devices/([^/?]+)/applyConfigurationContent$")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class HubError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


class HubService:
    """Serves IoT Hub's service API for deployments on 127.0.0.1:``port`` (0: any free port)."""

    def __init__(self, certs: HubCertificates, *, port: int = 0, key: bytes | None = None) -> None:
        self.key = key or hashlib.sha256(uuid.uuid4().bytes).digest()
        self.devices: dict[str, dict[str, Any]] = {}  # id → {"edge": bool, "modulesContent": ...}
        self.configurations: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                try:
                    service._authorize(self.headers.get("Authorization", ""), self.headers.get("Host", ""))
                    status, answer, headers = service.handle(method, self.path, body, dict(self.headers))
                except HubError as exc:
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
        self._httpd.shutdown()
        self._httpd.server_close()

    def add_device(self, device: str, *, edge: bool = True) -> None:
        with self._lock:
            self.devices.setdefault(device, {"edge": edge, "modulesContent": None})

    # -- auth
    def _authorize(self, header: str, host: str) -> None:
        if not header.startswith("SharedAccessSignature "):
            raise HubError(401, "IotHubUnauthorizedAccess", "no shared access signature")
        fields = dict(parse_qsl(header[len("SharedAccessSignature "):], keep_blank_values=True))
        resource, expiry, signature = fields.get("sr", ""), fields.get("se", ""), fields.get("sig", "")
        if fields.get("skn") != POLICY or unquote(resource).split("/")[0] != self.host:
            raise HubError(401, "IotHubUnauthorizedAccess", "the signature is for another hub or policy")
        if not expiry.isdigit() or int(expiry) < time.time():
            raise HubError(401, "IotHubUnauthorizedAccess", "the signature has expired")
        message = f"{quote_plus(unquote(resource))}\n{expiry}".encode()
        expected = base64.b64encode(hmac.new(self.key, message, hashlib.sha256).digest()).decode()
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise HubError(401, "IotHubUnauthorizedAccess", "the signature does not match the policy's key")

    # -- routes
    def handle(self, method: str, target: str, body: bytes,
               headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        path = urlsplit(target).path
        try:
            data = json.loads(body) if body else None
        except ValueError:
            raise HubError(400, "ArgumentInvalid", "the request body is not JSON") from None
        with self._lock:
            match = _APPLY.match(path)
            if match and method == "POST":
                return self._apply(unquote(match.group(1)), data)
            match = _CONFIG.match(path)
            if match:
                return self._configuration(method, unquote(match.group(1)), data, headers)
            if path == "/configurations" and method == "GET":
                return 200, list(self.configurations.values()), {}
        raise HubError(404, "NotFound", f"{method} {path} is not something this local hub serves")

    def _apply(self, device: str, data: Any) -> tuple[int, Any, dict[str, str]]:
        entry = self.devices.get(device)
        if entry is None:
            raise HubError(404, "DeviceNotFound", f"device '{device}' is not registered")
        if not entry["edge"]:
            raise HubError(400, "ArgumentInvalid", f"device '{device}' is not an IoT Edge device")
        content = (data or {}).get("modulesContent")
        if not isinstance(content, dict) or "$edgeAgent" not in content or "$edgeHub" not in content:
            raise HubError(400, "ArgumentInvalid", "modulesContent needs $edgeAgent and $edgeHub")
        entry["modulesContent"] = content
        return 204, None, {}

    def _configuration(self, method: str, name: str, data: Any,
                       headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        existing = self.configurations.get(name)
        if method == "GET":
            if existing is None:
                raise HubError(404, "ConfigurationNotFound", f"configuration '{name}' does not exist")
            return 200, existing, {}
        if method == "DELETE":
            if existing is None:
                raise HubError(404, "ConfigurationNotFound", f"configuration '{name}' does not exist")
            del self.configurations[name]
            return 204, None, {}
        if method != "PUT" or not isinstance(data, dict):
            raise HubError(400, "ArgumentInvalid", "a configuration is a JSON object")
        match = headers.get("If-Match")
        if existing is not None:
            if not match:
                raise HubError(409, "ConfigurationAlreadyExists", f"configuration '{name}' exists already")
            if match not in ("*", existing["etag"]):
                raise HubError(412, "PreconditionFailed", "the etag does not match")
            if data.get("content") != existing["content"]:
                raise HubError(400, "ArgumentInvalid", "a configuration's content cannot change")
        stored = {**(existing or {"createdTimeUtc": _now(), "systemMetrics": {"results": {}, "queries": {}}}),
                  "id": name, "schemaVersion": data.get("schemaVersion", "1.0"), "labels": data.get("labels") or {},
                  "content": data.get("content") or {}, "targetCondition": data.get("targetCondition", ""),
                  "priority": int(data.get("priority") or 0), "metrics": data.get("metrics") or {"queries": {}},
                  "lastUpdatedTimeUtc": _now(), "etag": base64.b64encode(uuid.uuid4().bytes[:6]).decode()}
        self.configurations[name] = stored
        return (200 if existing else 201), stored, {}
