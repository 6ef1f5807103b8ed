"""``edgepack fleet``: a model to many IoT Edge devices in health-gated waves, and the rollouts' status."""

from __future__ import annotations

import copy
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from edgepack import api
from edgepack.cli.support import Finite, PathArg, home_from_env, parse_pairs, registry_flags, registry_options
from edgepack.errors import FleetError


@click.group("fleet")
def fleet() -> None:
    """Roll a model (or agent image) out to IoT Edge devices in waves, gated on what the agents report; pause,
    resume, abort; simulate a fleet of real agents on the local hub."""


def _hub(local: bool, connection_env: str) -> Any:
    from edgepack.fleet.hub import HubClient

    if local:
        from edgepack.devtools.iothub import control

        found = control.endpoints(home_from_env().hub)
        return HubClient(found.service_connection_string, ca_file=found.ca_file)
    value = os.environ.get(connection_env)
    if not value:
        raise FleetError(f"reaching the hub: '{connection_env}' is not set",
                         hint=f"Export the hub's service connection string in {connection_env}, or pass --local.")
    try:
        return HubClient(value)
    except ValueError as exc:  # the SDK's parser of connection strings
        raise FleetError(f"reading the connection string in '{connection_env}': {exc}",
                         hint="Use the hub's service connection string: HostName=...;SharedAccessKeyName=...;"
                              "SharedAccessKey=...") from None


def _hub_options(func):
    func = click.option("--local", is_flag=True, help="The local hub ('edgepack edge hub start').")(func)
    return click.option("--hub-connection-env", "connection_env", metavar="VAR", default="IOTHUB_CONNECTION_STRING",
                        show_default=True, help="Variable holding the hub's service connection string.")(func)


def _what(state: dict[str, Any]) -> str:
    if state.get("image"):
        return f"image {state['image']['ref']}"
    return f"model {state['model'].get('version')} {state['model'].get('digest', '')[:19]}"


def _shown(state: dict[str, Any]) -> dict[str, Any]:
    """A state for printing: the secret env values of an image rollout's module spec redacted."""
    if not state.get("image"):
        return state
    from edgepack.deploy.iotedge import redact_module

    return {**state, "image": {**state["image"], "module": redact_module(copy.deepcopy(state["image"]["module"]))}}


def _summary(state: dict[str, Any]) -> list[str]:
    lines = [f"{state['name']}: {state['phase']} ({_what(state)}, module {state['module']})"]
    for wave in state["waves"]:
        counts = (state.get("counts") or {}).get(str(wave["number"])) or {}
        shown = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
        lines.append(f"  wave {wave['number']:>2} {wave['ring'] or '':<8} {len(wave['devices']):>5} devices  "
                     f"{wave['status']:<9} {shown}")
    failing = [(d, v["reason"]) for d, v in (state.get("devices") or {}).items() if v["state"] in ("failing", "failed")]
    for device, reason in failing[:10]:
        lines.append(f"  {device}: {reason}")
    if state.get("reason"):
        lines.append(f"  why: {state['reason']}")
    return lines


class _Lines:
    """Plain progress lines on stderr: one when a wave changes."""

    def __init__(self) -> None:
        self.seen: dict[int, str] = {}

    def __call__(self, state: dict[str, Any]) -> None:
        for wave in state["waves"]:
            counts = (state.get("counts") or {}).get(str(wave["number"])) or {}
            mark = f"{wave['status']} {counts.get('healthy', 0)}/{len(wave['devices'])}"
            if self.seen.get(wave["number"]) != mark and wave["status"] != "waiting":
                self.seen[wave["number"]] = mark
                click.echo(f"wave {wave['number']} ({wave['ring'] or 'all'}): {wave['status']}, "
                           f"{counts.get('healthy', 0)} of {len(wave['devices'])} healthy", err=True)


class _Bars:
    """A progress bar per wave (healthy devices of its size) on a terminal."""

    def __init__(self) -> None:
        from rich.progress import Progress  # imported lazily: only interactive rollouts draw bars

        self.bar = Progress(transient=False)
        self.tasks: dict[int, Any] = {}
        self.bar.start()

    def __call__(self, state: dict[str, Any]) -> None:
        for wave in state["waves"]:
            if wave["status"] == "waiting":
                continue
            counts = (state.get("counts") or {}).get(str(wave["number"])) or {}
            if wave["number"] not in self.tasks:
                self.tasks[wave["number"]] = self.bar.add_task(f"wave {wave['number']} {wave['ring'] or ''}",
                                                               total=len(wave["devices"]))
            self.bar.update(self.tasks[wave["number"]], completed=counts.get("healthy", 0),
                            description=f"wave {wave['number']} {wave['ring'] or ''} {wave['status']}")

    def stop(self) -> None:
        self.bar.stop()


@fleet.command("rollout")
@click.option("--model", "model", metavar="REF@DIGEST",
              help="A model pushed with 'edgepack model push', pinned by digest (a hot swap).")
@click.option("--image", "image", metavar="REF@DIGEST",
              help="Or a new agent image (packaged with --target iot-edge, pushed, pinned by digest): the module "
                   "is replaced (an image pull and a restart on each device).")
@click.option("--env", "env", multiple=True, metavar="K=V",
              help="With --image: the new module's environment (it replaces the module's whole spec), repeatable.")
@click.option("--state-host-dir", default="", metavar="DIR",
              help="With --image: the host folder of the module's state, as the base deployment has it (default "
                   "/var/lib/edgepack/MODULE), so queued messages and models carry over.")
@click.option("--name", required=True, help="The rollout's name (lowercase letters, digits, '-'), used once.")
@click.option("--module", default="edgepack-agent", show_default=True, help="The agent module's name.")
@click.option("--rings", metavar="LIST", help="Ring tags in order (tags.edgepack.ring), e.g. canary,ring1,all.")
@click.option("--target-condition", metavar="COND", help="Or the devices of a twin query condition.")
@click.option("--wave", "wave", default="start=5,factor=2,max=500", show_default=True,
              help="Devices per wave: start, growth factor, cap.")
@click.option("--gate", "gate", default="error_rate<0.01", show_default=True,
              help="What each device must report to count healthy: error_rate, p99_ms, p50_ms, outbox_depth; with "
                   "--shadow also agreement and shadow_p99_ms.")
@click.option("--soak", default="5m", show_default=True, help="How long a wave stays healthy before the next.")
@click.option("--abort", "abort", default="failed>10%,min=20", show_default=True,
              help="When a wave fails: the share of failing devices, once this many reported.")
@click.option("--timeout", default="30m", show_default=True, help="The whole rollout's time limit (then abort).")
@click.option("--shadow", metavar="DURATION",
              help="First score beside the served model this long on each wave (its answers are not sent), and "
                   "serve it only if the gate's agreement held.")
@click.option("--poll", default=5.0, show_default=True, type=Finite(0.05, 600),
              help="Seconds between looks at the hub.")
@click.option("--dry-run", is_flag=True, help="Print the waves; send and record nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the final state as JSON.")
@_hub_options
@registry_flags
def rollout_cmd(model: str | None, image: str | None, env: tuple[str, ...], state_host_dir: str, name: str,
                module: str, rings: str | None,
                target_condition: str | None, wave: str,
                gate: str, soak: str, abort: str, timeout: str, shadow: str | None, poll: float, dry_run: bool,
                as_json: bool,
                local: bool, connection_env: str, registry_username: str | None, ca_file: str | None,
                insecure_http: bool) -> None:
    """Roll a model out: each wave's devices get it by a hot swap (no image pull), and the next wave starts only
    once they report it and the gate held for the soak time; a failing wave rolls every device back. With
    --image, a new agent image goes out the same way (the module is replaced; healthy once the new agent reports
    running it and the gate holds).

    The same command again (same name and model or image) resumes a rollout whose controller stopped or was killed,
    from its last recorded step; one controller acts on a rollout at a time."""
    from edgepack.fleet import spec
    from edgepack.fleet.runner import RolloutRequest

    if rings and target_condition:
        raise click.UsageError("give --rings or --target-condition, not both")
    if (model is None) == (image is None):
        raise click.UsageError("give --model (a new model) or --image (a new agent image), one of them")
    if (env or state_host_dir) and image is None:
        raise click.UsageError("--env and --state-host-dir describe a new module: they go with --image")
    request = RolloutRequest(
        name=spec.check_name(name), model={}, module=module,
        rings=spec.parse_rings(rings) if rings else None, target_condition=target_condition,
        wave=spec.parse_wave(wave), gate=spec.parse_gate(gate, shadow=shadow is not None),
        soak_s=spec.parse_duration("--soak", soak), abort=spec.parse_abort(abort),
        timeout_s=spec.parse_duration("--timeout", timeout),
        shadow_s=spec.parse_duration("--shadow", shadow) if shadow is not None else 0.0)
    registry = registry_options(registry_username, ca_file, insecure_http)
    if image is not None:
        request = RolloutRequest(**{**request.__dict__, "image": api.fleet_image(
            image, module=module, env=parse_pairs(env, "--env"), state_host_dir=state_host_dir, registry=registry)})
    else:
        request = RolloutRequest(**{**request.__dict__, "model": api.fleet_model(model or "", registry=registry)})
    home = home_from_env()
    hub = _hub(local, connection_env)
    recorded = next((s for s in api.fleet_status(home) if s["name"] == name), None)
    same = recorded is not None and recorded.get("model") == request.model and recorded.get("image") == request.image
    if recorded is not None and not dry_run and same \
            and recorded["phase"] in ("running", "paused"):
        click.echo(f"resuming rollout '{name}' from its recorded state (step {recorded['steps']})", err=True)
    else:
        state = api.fleet_plan(home, hub, request, now=time.time())
        if dry_run:
            click.echo(json.dumps(_shown(state), indent=2) if as_json else "\n".join(_summary(state)))
            return
        api.fleet_start(home, state)
    draw: Any = _Bars() if sys.stderr.isatty() else _Lines()
    try:
        final = api.fleet_run(home, hub, name, poll_s=poll, progress=draw)
    finally:
        if isinstance(draw, _Bars):
            draw.stop()
    click.echo(json.dumps(_shown(final), indent=2) if as_json else "\n".join(_summary(final)))
    if final["phase"] != "succeeded":
        sys.exit(3)


@fleet.command("status")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the recorded states as JSON.")
@click.option("--watch", is_flag=True, help="Print again every few seconds until the rollout ends.")
def status_cmd(name: str | None, as_json: bool, watch: bool) -> None:
    """Per wave: its ring, devices, status and how many are healthy, pending, failing, failed or offline; the
    failing devices' reported errors and why a rollout stopped."""
    while True:
        states = api.fleet_status(home_from_env(), name)
        if as_json:
            shown = [_shown(s) for s in states]
            click.echo(json.dumps(shown if name is None else shown[0], indent=2))
        else:
            for state in states:
                click.echo("\n".join(_summary(state)))
            if not states:
                click.echo("no rollouts", err=True)
        if not watch or all(s["phase"] in ("succeeded", "aborted") for s in states):
            return
        time.sleep(3)


def _control(name: str, request: str, local: bool = False, connection_env: str = "") -> None:
    hub = _hub(local, connection_env) if request == "abort" and (local or os.environ.get(connection_env)) else None
    click.echo(f"{name}: {api.fleet_control(home_from_env(), name, request, hub=hub, now=time.time())}")


@fleet.command("pause")
@click.argument("name")
def pause_cmd(name: str) -> None:
    """Hold a rollout where it is (no new wave starts) until resumed."""
    _control(name, "pause")


@fleet.command("resume")
@click.argument("name")
def resume_cmd(name: str) -> None:
    """Let a paused rollout go on."""
    _control(name, "resume")


@fleet.command("abort")
@click.argument("name")
@_hub_options
def abort_cmd(name: str, local: bool, connection_env: str) -> None:
    """Stop a rollout and roll every device back to the model it had (its deployment is deleted)."""
    _control(name, "abort", local, connection_env)


def _sim_line(elapsed: float, snap: dict[str, Any], models: dict[str, Any]) -> str:
    serving = ", ".join(f"v{v}: {n}" for v, n in models["servingByVersion"].items()) or "none yet"
    return (f"{elapsed:6.0f} s  devices {snap['devices']} ({snap['offline']} offline), connected "
            f"{models['connected']}, serving {serving}; inputs {snap['sent']} sent, {snap['answered']} answered, "
            f"{snap['errors']} errors")


@fleet.command("simulate")
@click.option("--devices", type=click.IntRange(1, 5000), required=True, help="How many devices to simulate.")
@click.option("--model", "model_ref", required=True, metavar="NAME:VERSION",
              help="The registered model every agent starts with.")
@click.option("--inference-config", "config_path", required=True, type=PathArg(),
              help="Its inference config (the entry script the agents run).")
@click.option("--fail-rate", type=Finite(0, 1), default=0.0, show_default=True,
              help="Share of devices on which every new model fails (each input it scores answers an error).")
@click.option("--offline-rate", type=Finite(0, 1), default=0.0, show_default=True,
              help="Share of devices that are offline at first (their inputs wait at the hub).")
@click.option("--offline-for", default="10m", show_default=True, help="How long they stay offline.")
@click.option("--rings", default="canary=5%,ring1=25%", show_default=True,
              help="Ring tags (tags.edgepack.ring) by share of the fleet; the rest has none ('all' in a rollout).")
@click.option("--rate", type=Finite(0.01, 100), default=1.0, show_default=True,
              help="Inputs per device per second.")
@click.option("--seconds", "duration", metavar="DURATION", help="Stop after this long (default: on Ctrl-C).")
@click.option("--prefix", default="sim", show_default=True, help="Device ids are PREFIX-0000, PREFIX-0001, ...")
@click.option("--agents-per-process", type=click.IntRange(1, 200), default=25, show_default=True,
              help="Agents sharing one Python process.")
@click.option("--report-seconds", type=Finite(0.5, 300), default=5.0, show_default=True,
              help="How often each agent reports its properties.")
@click.option("--body", "body_path", type=PathArg(),
              help="The input to send (default: the inference config's input sample).")
@click.option("--json", "as_json", is_flag=True, help="Print the final tally as JSON.")
def simulate_cmd(devices: int, model_ref: str, config_path: Path, fail_rate: float, offline_rate: float,
                 offline_for: str, rings: str, rate: float, duration: str | None, prefix: str,
                 agents_per_process: int, report_seconds: float, body_path: Path | None, as_json: bool) -> None:
    """Run DEVICES real agents (the real device SDK) as IoT Edge devices of the local hub, send each one inputs
    at a steady rate and count every result that reaches $upstream: roll models out to them from another
    terminal with 'edgepack fleet rollout --local'. Exits 3 when an online device's input got no result."""
    from edgepack.devtools.fleetsim.simulator import SimSpec, parse_ring_shares
    from edgepack.fleet.spec import check_name, parse_duration

    spec = SimSpec(devices=devices, prefix=check_name(prefix), rings=parse_ring_shares(rings), fail_rate=fail_rate,
                   offline_rate=offline_rate, offline_s=parse_duration("--offline-for", offline_for), rate=rate,
                   per_process=agents_per_process, report_s=report_seconds)
    limit = parse_duration("--seconds", duration) if duration else None
    body = None
    if body_path is not None:
        try:
            body = body_path.read_bytes()
        except OSError as exc:
            raise FleetError(f"reading --body {body_path}: {exc.strerror}", hint="Give a file with one request.")
    simulation = api.fleet_simulation(home_from_env(), model_ref=model_ref, config_path=config_path, spec=spec,
                                      body=body)
    click.echo(f"{devices} agents starting ({len(simulation.failing)} failing, {len(simulation.offline)} offline "
               f"for {spec.offline_s:.0f} s); state in {simulation.workdir}", err=True)
    began = time.monotonic()
    next_line = 0.0
    try:
        while limit is None or time.monotonic() - began < limit:
            tick = time.monotonic()
            simulation.send()
            if tick - began >= next_line:
                click.echo(_sim_line(tick - began, simulation.snapshot(), simulation.models()), err=True)
                next_line = tick - began + 5
            time.sleep(max(0.0, 1 / rate - (time.monotonic() - tick)))
    except KeyboardInterrupt:
        pass
    finally:
        click.echo("stopping: waiting for the last results", err=True)
        try:
            simulation.drain(30)
            summary = {**simulation.snapshot(), **simulation.models()}
        finally:
            simulation.stop()
    click.echo(json.dumps(summary, indent=2) if as_json else "\n".join(f"{k}: {v}" for k, v in summary.items()))
    if summary["missing"]:
        sys.exit(3)
