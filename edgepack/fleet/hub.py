"""The hub a rollout drives, through azure-iot-hub's service clients: Azure IoT Hub, or the local hub, which speaks
the same service API (the only I/O of the controller besides its state file).

Reads are twin queries (paged); writes are device twin tags and layered deployments (configurations).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from edgepack.errors import FleetError


@dataclass(frozen=True)
class ModuleReport:
    """A module twin's reported ``edgepack`` properties and whether the module is connected."""

    reported: dict[str, Any]
    connected: bool


def _failed(action: str, exc: Exception) -> FleetError:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    text = (getattr(response, "text", "") or str(exc))[:300]
    hint = ("Use a connection string with registry read/write and service connect permissions."
            if status in (401, 403) else "Check the hub's name and the network path to it.")
    return FleetError(f"{action}: {f'HTTP {status}: ' if status else ''}{text}", hint=hint)


def _status(exc: Exception) -> int | None:
    return getattr(getattr(exc, "response", None), "status_code", None)


class HubClient:
    """IoT Hub's service API for a rollout (``connection_string`` holds a policy key; never printed)."""

    def __init__(self, connection_string: str, *, ca_file: str | None = None) -> None:
        from azure.iot.hub import IoTHubConfigurationManager, IoTHubRegistryManager

        self.registry = IoTHubRegistryManager.from_connection_string(connection_string)
        self.configurations = IoTHubConfigurationManager.from_connection_string(connection_string)
        if ca_file:  # a hub whose certificate a private CA signed (the local hub)
            for client in (self.registry, self.configurations):
                client.protocol.config.connection.verify = ca_file
        self.requests = 0

    def _call(self, action: str, request: Callable[[], Any], *, done_status: int | None = None) -> Any:
        """One request to the hub, counted; its failure as a FleetError naming ``action`` (an HTTP status of
        ``done_status`` means the request's effect is there already: a resumed step)."""
        self.requests += 1
        try:
            return request()
        except Exception as exc:  # msrest raises HttpOperationError; transport failures are requests' own
            if done_status is not None and _status(exc) == done_status:
                return None
            raise _failed(action, exc) from None

    def _query(self, text: str) -> list[Any]:
        from azure.iot.hub.models import QuerySpecification

        items: list[Any] = []
        token = None
        while True:
            page = self._call(f"querying the hub ({text[:80]})",
                              lambda: self.registry.query_iot_hub(QuerySpecification(query=text), token, 1000))
            items += page.items or []
            token = page.continuation_token
            if not token:
                return items

    def edge_devices(self, condition: str) -> dict[str, dict[str, Any]]:
        """IoT Edge devices matching ``condition`` (a twin query condition; ``*`` for all): id -> tags."""
        where = "capabilities.iotEdge = true" + ("" if condition.strip() in ("", "*") else f" AND ({condition})")
        return {t.device_id: dict(t.tags or {}) for t in self._query(f"SELECT * FROM devices WHERE {where}")}

    def module_reports(self, module: str) -> dict[str, ModuleReport]:
        """Every twin of ``module``: device id -> its reported ``edgepack`` properties and connection."""
        out = {}
        for twin in self._query(f"SELECT * FROM devices.modules WHERE moduleId = '{module}'"):
            reported = (twin.properties.reported or {}) if twin.properties else {}
            out[twin.device_id] = ModuleReport(dict(reported.get("edgepack") or {}),
                                               (twin.connection_state or "") == "Connected")
        return out

    def tag(self, device: str, tags: dict[str, Any]) -> None:
        """Merge ``tags`` into a device twin's tags."""
        from azure.iot.hub.models import Twin

        self._call(f"tagging device '{device}'", lambda: self.registry.update_twin(device, Twin(tags=tags), "*"))

    def layers(self) -> list[Any]:
        """Every configuration on the hub."""
        return list(self._call("listing the hub's deployments",
                               lambda: self.configurations.get_configurations(max_count=100)) or [])

    def create_layer(self, layer_id: str, content: dict[str, Any], *, target_condition: str, priority: int,
                     labels: dict[str, str]) -> None:
        """Create a layered deployment; one that exists already with this id is taken as done (a resumed step)."""
        from azure.iot.hub.models import Configuration, ConfigurationContent

        configuration = Configuration(id=layer_id, schema_version="1.0", labels=labels, priority=priority,
                                      target_condition=target_condition,
                                      content=ConfigurationContent(modules_content=content))
        self._call(f"creating deployment '{layer_id}'",
                   lambda: self.configurations.create_configuration(configuration), done_status=409)

    def delete_layer(self, layer_id: str) -> None:
        """Delete a deployment; one already gone is taken as done."""
        self._call(f"deleting deployment '{layer_id}'", lambda: self.configurations.delete_configuration(layer_id),
                   done_status=404)
