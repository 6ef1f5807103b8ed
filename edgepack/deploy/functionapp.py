"""Deploying a function image to an Azure Function App (Linux, container) through azure-mgmt-web.

Side effects: ARM requests, through the management client's transport. The steps mirror the Azure CLI:
check the plan (Linux, not Consumption: those take no custom image), create the site or point the existing
one at the new image, then read the app settings, merge, and write them back (a PUT replaces the whole set,
so nothing is ever clobbered). Images are deployed by digest only. ``--dry-run`` sends the reads and records
the writes instead of sending them; secrets are redacted from what is printed.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import requests
import urllib3
from requests.adapters import BaseAdapter, HTTPAdapter

from edgepack.deploy.pinning import pinned
from edgepack.errors import DeployError
from edgepack.oci.ref import ImageRef

log = logging.getLogger(__name__)
PUBLIC_SETTINGS = {"FUNCTIONS_EXTENSION_VERSION", "FUNCTIONS_WORKER_RUNTIME", "WEBSITES_ENABLE_APP_SERVICE_STORAGE",
                   "DOCKER_REGISTRY_SERVER_URL", "DOCKER_REGISTRY_SERVER_USERNAME"}


@dataclass(frozen=True)
class FunctionAppOptions:
    """Where and what to deploy."""

    subscription: str
    resource_group: str
    name: str
    plan: str
    image: str
    registry_username: str | None = None
    registry_password: str | None = None
    settings: Mapping[str, str] = field(default_factory=dict)
    required_settings: tuple[str, ...] = ()


@dataclass(frozen=True)
class RecordedRequest:
    """A request as printed by a dry run (never with credentials)."""

    method: str
    url: str
    body: Any

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"method": self.method, "url": self.url, "body": self.body}


def _is_read(request: requests.PreparedRequest) -> bool:
    return request.method == "GET" or (request.method == "POST" and str(request.url).split("?")[0].endswith("/list"))


class DryRunAdapter(BaseAdapter):
    """Sends reads through ``inner``; records writes and answers them with their own body (as ARM would)."""

    def __init__(self, inner: BaseAdapter) -> None:
        super().__init__()
        self.inner = inner
        self.recorded: list[RecordedRequest] = []

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
             verify: bool | str = True, cert: Any = None, proxies: Any = None) -> requests.Response:
        if _is_read(request):
            return self.inner.send(request, stream=stream, timeout=timeout, verify=verify, cert=cert,
                                   proxies=proxies)
        raw = request.body
        body = json.loads(raw) if isinstance(raw, (str, bytes)) and raw else None
        self.recorded.append(RecordedRequest(request.method or "", request.url or "", body))
        content = raw if isinstance(raw, bytes) else raw.encode() if isinstance(raw, str) else b""
        return json_response(request, 200, content)

    def close(self) -> None:
        self.inner.close()


def json_response(request: requests.PreparedRequest, status: int, content: bytes) -> requests.Response:
    """A requests Response carrying ``content`` as JSON, as an HTTP adapter would build it."""
    response = requests.Response()
    response.status_code = status
    response.raw = urllib3.HTTPResponse(body=io.BytesIO(content), status=status, preload_content=False,
                                        headers={"Content-Type": "application/json"})
    response.headers["Content-Type"] = "application/json"
    response.request, response.url = request, request.url or ""
    return response


def redact_settings(body: Any) -> Any:
    """Replace app setting values by ``<redacted>`` unless they are known to be public."""
    if isinstance(body, dict) and isinstance(body.get("properties"), dict) and "appsettings" not in body:
        props = body["properties"]
        if all(isinstance(v, str) for v in props.values()):
            return {**body, "properties": {k: v if k in PUBLIC_SETTINGS else "<redacted>" for k, v in props.items()}}
    return body


def make_client(credential: Any, subscription: str, adapter: BaseAdapter | None = None) -> Any:
    """A WebSiteManagementClient whose HTTP goes through ``adapter`` (the transport seam)."""
    from azure.core.pipeline.transport import RequestsTransport
    from azure.mgmt.web import WebSiteManagementClient

    session = requests.Session()
    session.mount("https://", adapter or HTTPAdapter())
    return WebSiteManagementClient(credential, subscription, transport=RequestsTransport(session=session,
                                                                                          session_owner=False))


def _check_image(image: str) -> ImageRef:
    return pinned(image)


def merged_settings(current: Mapping[str, str], options: FunctionAppOptions, ref: ImageRef) -> dict[str, str]:
    """The app settings after the deploy: current ones kept, ours added or updated.

    Raises:
        DeployError: a connection setting the functions need is neither set nor given.
    """
    merged = {**current, "FUNCTIONS_EXTENSION_VERSION": "~4", "FUNCTIONS_WORKER_RUNTIME": "python",
              "WEBSITES_ENABLE_APP_SERVICE_STORAGE": "false", "DOCKER_REGISTRY_SERVER_URL": f"https://{ref.registry}"}
    if options.registry_username:
        merged["DOCKER_REGISTRY_SERVER_USERNAME"] = options.registry_username
        merged["DOCKER_REGISTRY_SERVER_PASSWORD"] = options.registry_password or ""
    merged.update(options.settings)
    missing = [s for s in options.required_settings if not merged.get(s)]
    if missing:
        raise DeployError(f"deploying '{options.name}': app setting(s) {', '.join(missing)} needed by the "
                          "function triggers are not set", hint=f"Pass --setting {missing[0]}=... .")
    return merged


def deploy(client: Any, options: FunctionAppOptions, *, on_step: Callable[[str], None] | None = None) -> str:
    """Create or update the Function App to run ``options.image``; returns the site's id.

    Raises:
        DeployError: a tag without digest, a plan that cannot run containers, a missing setting, or an ARM error.
    """
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
    from azure.mgmt.web.models import SiteConfig, SiteConfigResource, Site, StringDictionary

    ref = _check_image(options.image)
    step = on_step or (lambda text: log.info("%s", text))
    rg, name = options.resource_group, options.name
    try:
        plan = client.app_service_plans.get(rg, options.plan)
        tier = (plan.sku.tier if plan.sku else "") or ""
        if not plan.reserved or tier.lower() in ("dynamic", "flexconsumption"):
            raise DeployError(f"deploying '{name}' on plan '{options.plan}': the plan cannot run a custom Linux image "
                              f"(reserved={plan.reserved}, tier={tier or 'unknown'})",
                              hint="Use a Linux Elastic Premium (EP1-3) or Dedicated (B/S/P) plan.")
        try:
            current = client.web_apps.list_application_settings(rg, name).properties or {}
            exists = True
        except ResourceNotFoundError:
            current, exists = {}, False
        settings = merged_settings(current, options, ref)
        fx = f"DOCKER|{ref}"
        if exists:
            step(f"pointing '{name}' at {ref}")
            client.web_apps.update_configuration(rg, name, SiteConfigResource(linux_fx_version=fx))  # type: ignore[call-overload]
        else:
            step(f"creating function app '{name}' on plan '{options.plan}'")
            # azure-mgmt-web 11 flattens these keywords into ``properties`` at run time; its stubs list only
            # the nested form, hence the ignore.
            site = Site(location=plan.location, kind="functionapp,linux,container",  # type: ignore[call-overload]
                        server_farm_id=plan.id, reserved=True, site_config=SiteConfig(linux_fx_version=fx))
            client.web_apps.begin_create_or_update(rg, name, site).result()
        step(f"writing {len(settings)} app settings (merged with the {len(current)} already there)")
        client.web_apps.update_application_settings(rg, name, StringDictionary(properties=settings))
    except HttpResponseError as exc:
        raise DeployError(f"deploying '{name}': {exc.message or exc}", hint="Check the names, your role "
                          "assignments on the resource group, and 'az account show'.") from exc
    return f"/subscriptions/{options.subscription}/resourceGroups/{rg}/providers/Microsoft.Web/sites/{name}"
