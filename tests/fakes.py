"""Stand-ins for what cannot run here, only at transport seams: the Azure Resource Manager (ARM) API."""

from __future__ import annotations

import json
import re
from typing import Any

import requests
from azure.core.credentials import AccessToken
from requests.adapters import BaseAdapter

from edgepack.deploy.functionapp import json_response


class FakeCredential:
    """A TokenCredential that hands out a fixed token (no Azure AD here)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("fake-arm-token", 4_102_444_800)


class FakeArm(BaseAdapter):
    """The slice of ARM's Microsoft.Web API a Function App deploy uses, recording every request.

    ``sites`` maps an existing app's name to its app settings; ``plan`` is the App Service plan's JSON.
    """

    def __init__(self, *, plan: dict[str, Any], sites: dict[str, dict[str, str]] | None = None) -> None:
        super().__init__()
        self.plan = plan
        self.sites = sites or {}
        self.requests: list[tuple[str, str, Any, dict[str, str]]] = []

    def _answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if m := re.search(r"/serverfarms/([^/]+)$", path):
            return (200, self.plan) if method == "GET" and m.group(1) == self.plan["name"] else (404, {})
        m = re.search(r"/sites/([^/]+)(/.*)?$", path)
        site, rest = m.group(1), m.group(2) or ""
        if rest == "/config/appsettings/list":
            if site not in self.sites:
                return 404, {"error": {"code": "ResourceNotFound", "message": f"site {site} not found"}}
            return 200, {"name": "appsettings", "properties": self.sites[site]}
        if rest == "/config/appsettings" and method == "PUT":
            self.sites[site] = body["properties"]
            return 200, body
        if rest == "" and method == "PUT":
            self.sites.setdefault(site, {})
            return 200, {**body, "id": path, "name": site}
        if rest == "/config/web" and method in ("PUT", "PATCH"):
            return 200, body
        return 404, {"error": {"code": "NotFound", "message": path}}

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        path = request.url.split("?")[0].split("management.azure.com")[-1]
        body = json.loads(request.body) if request.body else None
        self.requests.append((request.method, request.url, body, dict(request.headers)))
        status, payload = self._answer(request.method, path, body)
        return json_response(request, status, json.dumps(payload).encode())

    def close(self) -> None:
        pass
