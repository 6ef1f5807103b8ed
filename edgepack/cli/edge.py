"""``edgepack edge``: the local IoT hub (``hub start|stop|status``) and what a developer does with it: send to a
module's input, read what reached ``$upstream``, read or patch a twin, call a direct method."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from edgepack.cli.support import emit, home_from_env
from edgepack.errors import HubError


def _control():
    from edgepack.devtools.iothub import control  # the hub's SDKs are imported only by these commands

    return control


def _json_arg(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint=what) from None


@click.group("edge")
def edge() -> None:
    """A local IoT hub for IoT Edge modules, and tools to use it (development; nothing here talks to Azure)."""


@edge.group("hub")
def hub() -> None:
    """Start, stop or inspect the local hub (state under $EDGEPACK_HOME/hub, kept across restarts)."""


@hub.command("start")
@click.option("--device", "devices", multiple=True, metavar="ID", help="Register this IoT Edge device (repeatable).")
@click.option("--device-port", type=click.IntRange(0, 65535), default=8883, show_default=True,
              help="Where devices connect (MQTT over TLS; the device SDK always uses 8883).")
@click.option("--service-port", type=click.IntRange(0, 65535), default=8443, show_default=True,
              help="The service API (HTTPS; 0: any free port).")
@click.option("--no-modules", is_flag=True, help="Do not run deployments' modules on the Docker engine.")
@click.option("--json", "as_json", is_flag=True)
def hub_start(devices: tuple[str, ...], device_port: int, service_port: int, no_modules: bool, as_json: bool) -> None:
    """Start the local hub in the background: mosquitto behind a TLS gateway that checks SAS tokens, IoT Hub's
    service API for the azure-iot-hub clients, and modules of applied deployments run on Docker."""
    found = _control().start(home_from_env().hub, devices=devices, device_port=device_port,
                             service_port=service_port, modules=not no_modules)
    _status(found, as_json)


def _status(found: Any, as_json: bool) -> None:
    data = {"devicePort": found.device_port, "servicePort": found.service_port, "caFile": found.ca_file,
            "pid": found.pid}
    emit(data, as_json, f"local hub running (pid {found.pid}): devices on localhost:{found.device_port}, "
                        f"service API on https://localhost:{found.service_port}, CA {found.ca_file}")


@hub.command("stop")
def hub_stop() -> None:
    """Stop the local hub and remove the module containers it started."""
    stopped = _control().stop(home_from_env().hub)
    click.echo("local hub stopped" if stopped else "no local hub was running")


@hub.command("status")
@click.option("--json", "as_json", is_flag=True)
def hub_status(as_json: bool) -> None:
    """Whether the local hub runs, and where."""
    found = _control().running(home_from_env().hub)
    if found is None:
        raise HubError("no local hub is running", hint="Start it with 'edgepack edge hub start'.")
    _status(found, as_json)


@hub.command("connection-string")
@click.option("--device", metavar="ID", help="A device's (with --module, a module's) connection string instead.")
@click.option("--module", metavar="NAME")
def hub_connection_string(device: str | None, module: str | None) -> None:
    """Print the hub's service connection string, or with --device an identity's (secrets: for the environment of
    a tool or an agent, not for a file)."""
    control = _control()
    found = control.endpoints(home_from_env().hub)
    if device is None:
        click.echo(found.service_connection_string)
        return
    click.echo(control.identity_connection_string(home_from_env().hub, device, module))


@edge.command("send")
@click.option("--device", required=True, metavar="ID")
@click.option("--module", required=True, metavar="NAME")
@click.option("--input", "input_name", default="input1", show_default=True, metavar="NAME")
@click.argument("file", type=click.File("r"))
def send(device: str, module: str, input_name: str, file: Any) -> None:
    """Send each JSON line of FILE ('-': stdin) as one message to a module's input; prints their message ids."""
    bodies = []
    for number, line in enumerate(file, 1):
        if line.strip():
            bodies.append(_json_arg(line, f"FILE line {number}"))
    if not bodies:
        raise click.BadParameter("no JSON lines in it", param_hint="FILE")
    for message_id in _control().send(home_from_env().hub, device, module, input_name, bodies):
        click.echo(message_id)


@edge.command("messages")
@click.option("--device", metavar="ID", help="Only this device's messages.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new ones until interrupted.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per message, with its properties.")
def messages(device: str | None, follow: bool, as_json: bool) -> None:
    """The messages that reached $upstream, oldest first."""
    try:
        for record in _control().messages(home_from_env().hub, device, follow=follow):
            if as_json:
                click.echo(json.dumps(record, sort_keys=True))
            else:
                source = f"{record['device']}/{record.get('module') or '-'}:{record.get('output') or '-'}"
                click.echo(f"{source} {record.get('message_id')} {json.dumps(record.get('body'))}")
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass


@edge.command("twin")
@click.argument("device")
@click.option("--module", metavar="NAME", help="The module's twin instead of the device's.")
@click.option("--desired", metavar="JSON", help="Merge this into the desired properties first (null deletes).")
@click.option("--tags", metavar="JSON", help="Merge this into the device twin's tags first (rings: "
                                             "'{\"edgepack\": {\"ring\": \"canary\"}}').")
def twin(device: str, module: str | None, desired: str | None, tags: str | None) -> None:
    """Print a device's or module's twin (JSON)."""
    patches = {}
    for option, value in (("--desired", desired), ("--tags", tags)):
        if value is not None:
            patches[option] = _json_arg(value, option)
            if not isinstance(patches[option], dict):
                raise click.BadParameter("a JSON object", param_hint=option)
    if tags is not None and module is not None:
        raise click.UsageError("--tags are a device twin's: leave out --module")
    click.echo(json.dumps(_control().twin(home_from_env().hub, device, module, patches.get("--desired"),
                                          tags=patches.get("--tags")), indent=2, sort_keys=True))


@edge.command("method")
@click.argument("device")
@click.argument("module")
@click.argument("name")
@click.argument("payload", required=False)
@click.option("--timeout", type=click.IntRange(1, 300), default=30, show_default=True, help="Seconds to wait.")
def method(device: str, module: str, name: str, payload: str | None, timeout: int) -> None:
    """Call direct method NAME on a module with a JSON PAYLOAD; prints {"status": ..., "payload": ...}."""
    body = _json_arg(payload, "PAYLOAD") if payload is not None else None
    result = _control().method(home_from_env().hub, device, module, name, body, timeout)
    click.echo(json.dumps(result, indent=2, sort_keys=True))
    if not 200 <= int(result["status"]) < 300:
        sys.exit(1)
