"""The ``edgepack`` command line: parse, call ``edgepack.api``, print. The one place errors become exit codes.

Results go to stdout (one reference or URL per line, or JSON with ``--json``); progress and logs go to stderr.
Environment variables are read by the CLI modules (this one, ``cli_support``, ``cli_deploy``) and nowhere else
in the library: ``EDGEPACK_HOME``, ``SOURCE_DATE_EPOCH``, ``EDGEPACK_REGISTRY_USERNAME`` /
``EDGEPACK_REGISTRY_PASSWORD``, and the variable named by ``--registry-password-env``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from edgepack import __version__, api
from edgepack.build.builder import BuildOptions
from edgepack.cli_deploy import deploy
from edgepack.cli_profile import profile_cmd
from edgepack.cli_support import (emit, home_from_env, parse_pairs, push_progress, registry_flags,
                                  registry_options, source_date_epoch)
from edgepack.errors import EdgepackError
from edgepack.targets import TARGET_NAMES, parse_target


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgepack")
@click.option("-v", "--verbose", count=True, help="More progress on stderr (-vv for debug).")
def cli(verbose: int) -> None:
    """Package registered ML models as OCI images for Azure Functions, IoT Edge, FPGA and web services."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, stream=sys.stderr, format="%(message)s")


@cli.group()
def model() -> None:
    """Register and manage models in the local store ($EDGEPACK_HOME/models)."""


@model.command("register")
@click.argument("name")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--tag", "tags", multiple=True, metavar="K=V", help="A tag; repeatable.")
@click.option("--description", default="", help="Free text stored with the version.")
@click.option("--json", "as_json", is_flag=True, help="Print the registered model as JSON.")
def model_register(name: str, path: Path, tags: tuple[str, ...], description: str, as_json: bool) -> None:
    """Register PATH (a file or folder) as the next version of NAME; prints NAME:VERSION and the sha256."""
    artifact = api.register_model(home_from_env(), name, path, tags=parse_pairs(tags, "--tag"), description=description)
    emit(artifact.to_dict(), as_json, f"{artifact.ref} sha256:{artifact.sha256}")


@model.command("list")
@click.option("--json", "as_json", is_flag=True)
def model_list(as_json: bool) -> None:
    """List every registered model version."""
    models = api.list_models(home_from_env())
    text = "\n".join(f"{m.ref}\t{m.format}\tsha256:{m.sha256[:12]}\t{m.created}" for m in models)
    emit([m.to_dict() for m in models], as_json, text)


@model.command("show")
@click.argument("ref", metavar="NAME[:VERSION]")
def model_show(ref: str) -> None:
    """Show one model version as JSON (the latest when no version is given)."""
    click.echo(json.dumps(api.get_model(home_from_env(), ref).to_dict(), indent=2, sort_keys=True))


@model.command("download")
@click.argument("ref", metavar="NAME[:VERSION]")
@click.argument("dest", type=click.Path(path_type=Path))
def model_download(ref: str, dest: Path) -> None:
    """Copy a model version's files to DEST."""
    artifact = api.download_model(home_from_env(), ref, dest)
    click.echo(f"{artifact.ref} -> {dest}")


@model.command("delete")
@click.argument("ref", metavar="NAME[:VERSION]")
def model_delete(ref: str) -> None:
    """Delete one version, or every version of NAME when no version is given."""
    api.delete_model(home_from_env(), ref)
    click.echo(f"deleted {ref}")


_TARGET_FLAGS = ("target_name", "auth_level", "no_auth", "input_path", "output_path", "input_queue",
                 "output_queue", "connection")


def _target_options(func):
    options = [
        click.option("--model", "model_ref", multiple=True, metavar="NAME[:VERSION]",
                     help="A registered model (the latest version when none is given); repeat it for several. "
                          "Without it: the model a v2 deployment names, or none."),
        click.option("--inference-config", "config_path", required=True, type=click.Path(path_type=Path),
                     help="inferenceconfig.json (Azure ML keys, the CLI's environment block included), a YAML "
                          "equivalent, or an Azure ML v2 managed online deployment YAML."),
        click.option("--target", "target_name", required=True, type=click.Choice(TARGET_NAMES),
                     help="Where the image will run."),
        click.option("--auth-level", type=click.Choice(["anonymous", "function", "admin"]),
                     help="functions-http: the function's auth level (default function)."),
        click.option("--no-auth", is_flag=True, default=None, help="webservice: serve without key authentication."),
        click.option("--input-path", metavar="CONTAINER/PATTERN",
                     help="functions-blob: blobs to score, e.g. input/{blobname}.json."),
        click.option("--output-path", metavar="CONTAINER/PATTERN",
                     help="functions-blob: where results go, e.g. output/{blobname}_out.json."),
        click.option("--input-queue", metavar="NAME", help="functions-servicebus: the queue to score."),
        click.option("--output-queue", metavar="NAME", help="functions-servicebus: the queue results go to."),
        click.option("--connection", metavar="SETTING",
                     help="functions-blob/-servicebus: the app setting holding the connection string."),
        click.option("--base-image", metavar="REF", help="Override the target's default base image."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _target(opts: dict[str, Any]):
    """Build the target from the target flags (removed from ``opts``)."""
    flags = {name: opts.pop(name) for name in _TARGET_FLAGS}
    return parse_target(flags.pop("target_name"), **{k: v for k, v in flags.items() if v is not None})


@cli.command("plan")
@_target_options
def plan_cmd(model_ref: tuple[str, ...], config_path: Path, base_image: str | None, **opts: Any) -> None:
    """Print the ImagePlan as JSON without building anything (a dry run)."""
    target = _target(opts)
    image_plan = api.plan(home_from_env(), model_ref=model_ref, config_path=config_path, target=target,
                          base_image=base_image)
    click.echo(json.dumps(image_plan.to_dict(), indent=2))


@cli.command("package")
@_target_options
@click.option("--tag", metavar="REGISTRY/REPO:TAG", help="Name of the image (required with --push).")
@click.option("--push", "do_push", is_flag=True, help="Push the image to --tag's registry.")
@click.option("--output", type=click.Path(path_type=Path), help="Write the image as an OCI image layout to DIR.")
@click.option("--dockerfile-context", type=click.Path(path_type=Path),
              help="Also write an equivalent Dockerfile build context to DIR.")
@click.option("--python-version", metavar="X.Y", help="Resolve dependencies for this Python (default: the base's).")
@click.option("--refresh-deps", is_flag=True, help="Resolve the requirements again instead of reusing the lock.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@registry_flags
def package_cmd(model_ref: tuple[str, ...], config_path: Path, base_image: str | None, tag: str | None, do_push: bool,
                output: Path | None, dockerfile_context: Path | None, python_version: str | None,
                refresh_deps: bool, as_json: bool, registry_username: str | None, ca_file: str | None,
                insecure_http: bool, **opts: Any) -> None:
    """Build the image for a model and target; prints the pushed REF@DIGEST or the layout path and digest."""
    target = _target(opts)
    if output is None and not do_push and dockerfile_context is None:
        stem = "+".join(ref.replace(":", "-") for ref in model_ref) or config_path.stem
        output = Path("edgepack-out") / f"{stem}-{target.name}"
    options = BuildOptions(mtime=source_date_epoch(), python_version=python_version,
                           refresh_deps=refresh_deps)
    bar, update = push_progress()
    with bar if bar is not None else _nothing():
        result = api.package(home_from_env(), model_ref=model_ref, config_path=config_path, target=target,
                             base_image=base_image, output=output, tag=tag, push_image_to_registry=do_push,
                             dockerfile_context=dockerfile_context,
                             registry=registry_options(registry_username, ca_file, insecure_http),
                             options=options, progress=update, env=dict(os.environ))
    lines = [str(result.pushed.ref)] if result.pushed else []
    if result.layout:
        lines.append(f"{result.layout}@{result.digest}")
    if result.context:
        lines.append(f"{result.context}/Dockerfile")
    emit(result.to_dict(), as_json, "\n".join(lines))


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@cli.command("push")
@click.argument("layout_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--to", "to", required=True, metavar="REGISTRY/REPO:TAG")
@click.option("--json", "as_json", is_flag=True)
@registry_flags
def push_cmd(layout_dir: Path, to: str, as_json: bool, registry_username: str | None, ca_file: str | None,
             insecure_http: bool) -> None:
    """Push an OCI image layout; prints REGISTRY/REPO@sha256:..."""
    bar, update = push_progress()
    with bar if bar is not None else _nothing():
        result = api.push(layout_dir, to, registry=registry_options(registry_username, ca_file, insecure_http),
                          progress=update)
    data = {"ref": str(result.ref), "uploaded": list(result.uploaded), "skipped": list(result.skipped),
            "mounted": list(result.mounted), "bytes_sent": result.bytes_sent}
    emit(data, as_json, str(result.ref))


def _daemon():
    from edgepack.daemon import DockerDaemon  # docker-py is imported only by commands that need the engine

    return DockerDaemon()


@cli.command("run")
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


@cli.command("stop")
@click.argument("name")
def stop_cmd(name: str) -> None:
    """Stop and remove a local run."""
    api.stop(home_from_env(), name, daemon=_daemon())
    click.echo(f"stopped {name}")


@cli.command("logs")
@click.argument("name")
@click.option("--tail", type=int, help="Only the last N lines.")
def logs_cmd(name: str, tail: int | None) -> None:
    """Print the output of a local run."""
    click.echo(api.logs(name, daemon=_daemon(), tail=tail), nl=False)


@cli.command("keys")
@click.argument("name")
@click.option("--regenerate", type=click.Choice(["primary", "secondary", "master"]),
              help="Replace this key; the others stay valid and the server needs no restart.")
def keys_cmd(name: str, regenerate: str | None) -> None:
    """Print the keys of a local run as JSON."""
    home = home_from_env()
    keys = api.regenerate_run_key(home, name, regenerate) if regenerate else api.run_keys(home, name)
    click.echo(json.dumps(keys, indent=2, sort_keys=True))


cli.add_command(deploy)
cli.add_command(profile_cmd)


def main() -> None:
    """Entry point: run the CLI; edgepack errors print ``error:``/``hint:`` and exit 1, never a traceback."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except EdgepackError as exc:
        click.echo(f"error: {exc.message}", err=True)
        if exc.hint:
            click.echo(f"hint: {exc.hint}", err=True)
        sys.exit(1)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except OSError as exc:  # a path the user named cannot be written or read: say which and why
        where = f" '{exc.filename}'" if exc.filename else ""
        click.echo(f"error: {exc.strerror or exc}{where}", err=True)
        click.echo("hint: Check that the path exists, is of the right kind (file or folder) and is writable.",
                   err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
