"""``edgepack run``, ``stop``, ``logs`` and ``keys``: images run on the local Docker engine."""

from __future__ import annotations

import json

import click

from edgepack import api
from edgepack.cli.support import emit, home_from_env, parse_pairs


def _daemon():
    from edgepack.daemon import DockerDaemon  # docker-py is imported only by commands that need the engine

    return DockerDaemon()


@click.command("run")
@click.argument("source", metavar="REF_OR_LAYOUT")
@click.option("--port", type=int, help="Host port (default: a free one).")
@click.option("--env", "env", multiple=True, metavar="K=V", help="Environment variable for the container.")
@click.option("--name", help="Container name (default derived from the model and digest).")
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for readiness.")
@click.option("--host-network", is_flag=True,
              help="Share the host's network, to reach services on its loopback (a local Azurite, say).")
@click.option("--json", "as_json", is_flag=True, help="Print URL, name and keys as JSON.")
def run_cmd(source: str, port: int | None, env: tuple[str, ...], name: str | None, timeout: float,
            host_network: bool, as_json: bool) -> None:
    """Start an image detached on the local Docker engine; prints the scoring URL once it is ready."""
    result = api.run(home_from_env(), source, daemon=_daemon(), name=name, port=port, env=parse_pairs(env, "--env"),
                     timeout=timeout, host_network=host_network)
    if not as_json:
        keys = f"; keys: 'edgepack keys {result.name}'" if result.keys else ""
        click.echo(f"name: {result.name}{keys}; logs: 'edgepack logs {result.name}'; "
                   f"stop: 'edgepack stop {result.name}'", err=True)
    emit(result.to_dict(), as_json, result.url)


@click.command("stop")
@click.argument("name")
def stop_cmd(name: str) -> None:
    """Stop and remove a local run."""
    api.stop(home_from_env(), name, daemon=_daemon())
    click.echo(f"stopped {name}")


@click.command("logs")
@click.argument("name")
@click.option("--tail", type=int, help="Only the last N lines.")
def logs_cmd(name: str, tail: int | None) -> None:
    """Print the output of a local run."""
    click.echo(api.logs(name, daemon=_daemon(), tail=tail), nl=False)


@click.command("keys")
@click.argument("name")
@click.option("--regenerate", type=click.Choice(["primary", "secondary", "master"]),
              help="Replace this key; the others stay valid and the server needs no restart.")
def keys_cmd(name: str, regenerate: str | None) -> None:
    """Print the keys of a local run as JSON."""
    home = home_from_env()
    keys = api.regenerate_run_key(home, name, regenerate) if regenerate else api.run_keys(home, name)
    click.echo(json.dumps(keys, indent=2, sort_keys=True))
