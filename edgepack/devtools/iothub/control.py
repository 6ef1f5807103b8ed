"""Driving a local hub from another process (the CLI): start it in the background, stop it, and use it the way
the cloud is used: twins and methods through azure-iot-hub's registry manager, deployments through
``edgepack.deploy.iotedge_apply``; plus what only a local hub offers: module inputs and the messages that
reached ``$upstream`` (``upstream.jsonl``).

Side effects: a background process, files under the hub's home, HTTPS to it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from edgepack.devtools.iothub.hub import DEVICE_PORT, SERVICE_PORT, HubEndpoints
from edgepack.errors import HubError

_NOT_RUNNING_HINT = "Start it with 'edgepack edge hub start'."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running(home: Path) -> HubEndpoints | None:
    """The endpoints of the hub running from ``home``, or None."""
    try:
        endpoints = HubEndpoints.read(home)
    except (OSError, ValueError, TypeError):
        return None
    return endpoints if _alive(endpoints.pid) else None


def endpoints(home: Path) -> HubEndpoints:
    found = running(home)
    if found is None:
        raise HubError(f"no local hub is running from {home}", hint=_NOT_RUNNING_HINT)
    return found


def start(home: Path, *, devices: tuple[str, ...] = (), device_port: int = DEVICE_PORT,
          service_port: int = SERVICE_PORT, modules: bool = True, timeout: float = 30.0) -> HubEndpoints:
    """Start the hub in the background (or register ``devices`` on the one running) and return its endpoints."""
    found = running(home)
    if found is not None:
        registry = _registry(found)
        for device in devices:
            if not _exists(registry, device):
                registry.create_device_with_sas(device, None, None, "enabled", iot_edge=True)
        return found
    home.mkdir(parents=True, exist_ok=True)
    (home / "hub-endpoints.json").unlink(missing_ok=True)
    command = [sys.executable, "-m", "edgepack.devtools.iothub", "--home", str(home),
               "--device-port", str(device_port), "--service-port", str(service_port)]
    command += [arg for device in devices for arg in ("--device", device)]
    if not modules:
        command.append("--no-modules")
    log = open(home / "hub.log", "ab")
    process = subprocess.Popen(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            lines = (home / "hub.log").read_text(errors="replace").strip().splitlines()
            tail = [line for line in lines if line and not line[0].isspace() and not line.startswith("Traceback")]
            raise HubError(f"the local hub stopped at start: {tail[-1] if tail else 'no output'}",
                           hint=f"Is port {device_port} or {service_port} in use? Is mosquitto installed "
                                "(scripts/setup.sh installs it)? The log is " + str(home / "hub.log"))
        found = running(home)
        if found is not None and found.pid == process.pid:
            return found
        time.sleep(0.1)
    process.terminate()
    raise HubError(f"the local hub did not start in {timeout:.0f} s", hint=f"See {home / 'hub.log'}.")


def stop(home: Path, timeout: float = 60.0) -> bool:
    """Stop the hub (and the modules it runs); False when none was running."""
    found = running(home)
    if found is None:
        return False
    os.kill(found.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(found.pid):
        time.sleep(0.1)
    if _alive(found.pid):
        os.kill(found.pid, signal.SIGKILL)
    return True


def _registry(found: HubEndpoints) -> Any:
    from azure.iot.hub import IoTHubRegistryManager

    registry = IoTHubRegistryManager.from_connection_string(found.service_connection_string)
    registry.protocol.config.connection.verify = found.ca_file
    return registry


def _exists(registry: Any, device: str) -> bool:
    try:
        registry.get_device(device)
        return True
    except Exception:  # noqa: BLE001 - msrest's HttpOperationError for a 404
        return False


def _failed(action: str, exc: Exception | None, text: str = "") -> HubError:
    response = getattr(exc, "response", None)
    text = text or getattr(response, "text", "") or str(exc)
    try:
        text = json.loads(text).get("ExceptionMessage") or text
    except (ValueError, AttributeError):
        pass
    return HubError(f"{action}: {text[:300]}", hint="'edgepack edge twin DEVICE' shows what the hub knows.")


def wait_module(home: Path, device: str, module: str, version: str | None = None,
                timeout: float = 180.0) -> dict[str, Any]:
    """Wait until the hub's edge runtime reports ``module`` of ``device`` (at ``version``) running or failed.

    Raises:
        HubError: it failed (with the reason reported) or did not start in time.
    """
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            reported = twin(home, device, "$edgeAgent")["properties"]["reported"]
        except HubError:
            reported = {}
        status = (reported.get("modules") or {}).get(module) or {}
        if version is not None and status.get("version") != version:
            status = {}
        elif status.get("runtimeStatus") == "running":
            return status
        if status.get("runtimeStatus") == "failed":
            raise HubError(f"module {module} of {device} did not start: {status.get('statusDescription')}",
                           hint="Check that the image was pushed and can be pulled from this machine.")
        time.sleep(0.3)
    raise HubError(f"module {module} of {device} was not running after {timeout:.0f} s ({status or 'no report'})",
                   hint=f"See {home / 'hub.log'}.")


def identity_connection_string(home: Path, device: str, module: str | None = None) -> str:
    """A device's or module's connection string (a module is registered when missing)."""
    registry = _registry(endpoints(home))
    try:
        if module:
            try:
                found = registry.get_module(device, module)
            except Exception:  # noqa: BLE001 - not registered yet
                found = registry.create_module_with_sas(device, module, None, None, None)
        else:
            found = registry.get_device(device)
    except Exception as exc:  # noqa: BLE001
        raise _failed(f"the identity {device}{'/' + module if module else ''}", exc) from None
    key = found.authentication.symmetric_key.primary_key
    return f"HostName=localhost;DeviceId={device};" + (f"ModuleId={module};" if module else "") + \
        f"SharedAccessKey={key}"


def twin(home: Path, device: str, module: str | None = None, desired: dict[str, Any] | None = None, *,
         tags: dict[str, Any] | None = None) -> dict[str, Any]:
    """The twin (after merging ``desired`` into its desired properties and ``tags`` into a device's tags)."""
    from azure.iot.hub.models import Twin, TwinProperties

    registry = _registry(endpoints(home))
    try:
        if tags is not None:
            registry.update_twin(device, Twin(tags=tags), "*")
        if desired is not None:
            patch = Twin(properties=TwinProperties(desired=desired))
            result = registry.update_module_twin(device, module, patch) if module else \
                registry.update_twin(device, patch)
        else:
            result = registry.get_module_twin(device, module) if module else registry.get_twin(device)
    except Exception as exc:  # noqa: BLE001 - msrest and requests errors
        raise _failed(f"the twin of {device}{'/' + module if module else ''}", exc) from None
    return result.serialize(keep_readonly=True)


def method(home: Path, device: str, module: str, name: str, payload: Any = None,
           timeout: int = 30) -> dict[str, Any]:
    """Call a direct method; returns ``{"status": ..., "payload": ...}``."""
    from azure.iot.hub.models import CloudToDeviceMethod

    registry = _registry(endpoints(home))
    try:
        result = registry.invoke_device_module_method(device, module, CloudToDeviceMethod(
            method_name=name, payload=payload, response_timeout_in_seconds=timeout))
    except Exception as exc:  # noqa: BLE001
        raise _failed(f"method {name} on {device}/{module}", exc) from None
    return {"status": result.status, "payload": result.payload}


def send(home: Path, device: str, module: str, input_name: str, bodies: list[Any]) -> list[str]:
    """Send each body as one message to a module's input; returns their message ids."""
    from azure.iot.hub.auth import ConnectionStringAuthentication

    found = endpoints(home)
    session = ConnectionStringAuthentication(found.service_connection_string).signed_session()
    url = f"https://localhost:{found.service_port}/edgepack/devices/{device}/modules/{module}/inputs/{input_name}"
    response = session.post(url, json={"messages": [{"body": body} for body in bodies]}, verify=found.ca_file,
                            timeout=30)
    if response.status_code != 200:
        raise _failed(f"sending to {device}/{module} input {input_name}", None, response.text)
    return list(response.json()["messageIds"])


def messages(home: Path, device: str | None = None, *, follow: bool = False,
             poll: float = 0.2) -> Iterator[dict[str, Any]]:
    """The messages that reached ``$upstream`` (from the hub's log of them), oldest first; ``follow`` waits for
    more until interrupted."""
    path = home / "upstream.jsonl"
    offset = 0
    while True:
        if path.exists():
            with open(path, "rb") as handle:
                handle.seek(offset)
                while True:
                    line = handle.readline()
                    if not line.endswith(b"\n"):
                        break  # a line being written: read it next time
                    offset += len(line)
                    record = json.loads(line)
                    if device is None or record.get("device") == device:
                        yield record
        if not follow:
            return
        time.sleep(poll)
