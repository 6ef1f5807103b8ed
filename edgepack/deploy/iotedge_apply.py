"""Sending an IoT Edge deployment manifest to a hub with azure-iot-hub's ``IoTHubConfigurationManager``: applied
on one device, or created as an automatic deployment (a configuration with a target condition and a priority).

Side effects: HTTPS to the hub's service API. The hub connection string comes from the environment, never from
a flag or a file, and is never printed.
"""

from __future__ import annotations

import re
from typing import Any

from edgepack.errors import DeployError

# A configuration id: at most 128 lowercase letters, digits and - : + % _ # * ? ! ( ) , = @ ; $ ' (IoT Hub's rule).
_CONFIGURATION_ID = re.compile(r"[a-z0-9\-:+%_#*?!(),=@;$']{1,128}")


def _manager(connection_string: str, ca_file: str | None) -> Any:
    from azure.iot.hub import IoTHubConfigurationManager  # imported here: only deployments need it

    manager = IoTHubConfigurationManager.from_connection_string(connection_string)
    if ca_file:
        manager.protocol.config.connection.verify = ca_file  # a hub whose certificate a private CA signed
    return manager


def _failed(action: str, exc: Exception) -> DeployError:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    text = getattr(response, "text", "") or str(exc)
    if status == 404:
        return DeployError(f"{action}: the hub does not know it (HTTP 404): {text[:300]}",
                           hint="Register the device as an IoT Edge device first (az iot hub device-identity create "
                                "--edge-enabled).")
    if status in (401, 403):
        return DeployError(f"{action}: the hub refused the credentials (HTTP {status})",
                           hint="Use a connection string with the registry write and service connect permissions.")
    if status == 409:
        return DeployError(f"{action}: it exists already, and a deployment's content cannot change (HTTP 409)",
                           hint="Give this version of the deployment a new --name.")
    return DeployError(f"{action}: {text[:300]}", hint="Check the hub's name and the network path to it.")


def apply_on_device(manifest: dict[str, Any], device: str, *, connection_string: str,
                    ca_file: str | None = None) -> None:
    """Set the device's modules to ``manifest`` (``applyConfigurationContent``).

    Raises:
        DeployError: the hub refused it (the reason and what to do named).
    """
    from azure.iot.hub.models import ConfigurationContent

    try:
        _manager(connection_string, ca_file).apply_configuration_on_edge_device(
            device, ConfigurationContent(modules_content=manifest["modulesContent"]))
    except Exception as exc:  # msrest raises HttpOperationError; transport failures are requests' exceptions
        raise _failed(f"applying the deployment on device '{device}'", exc) from None


def create_deployment(manifest: dict[str, Any], name: str, *, target_condition: str, priority: int,
                      connection_string: str, labels: dict[str, str] | None = None,
                      ca_file: str | None = None) -> str:
    """Create an automatic deployment ``name`` for the devices ``target_condition`` selects; returns its id.

    Raises:
        DeployError: a bad name or priority, or the hub refused it.
    """
    from azure.iot.hub.models import Configuration, ConfigurationContent

    if not _CONFIGURATION_ID.fullmatch(name):
        raise DeployError(f"deployment name {name!r}: use at most 128 lowercase letters, digits and - _ : + ...",
                          hint="For example --name digits-v2.")
    if priority < 0:
        raise DeployError(f"priority {priority}: it must be 0 or more (the highest wins)", hint="Pass --priority N.")
    configuration = Configuration(id=name, schema_version="1.0", priority=priority, target_condition=target_condition,
                                  labels={"createdBy": "edgepack", **(labels or {})},
                                  content=ConfigurationContent(modules_content=manifest["modulesContent"]))
    try:
        created = _manager(connection_string, ca_file).create_configuration(configuration)
    except Exception as exc:
        raise _failed(f"creating deployment '{name}'", exc) from None
    return str(getattr(created, "id", name))
