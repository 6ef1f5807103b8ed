"""``edgepack plan``, ``package`` and ``push``: from a model and an inference config to an image."""

from __future__ import annotations

import json
import os
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import click

from edgepack import api
from edgepack.build.builder import BuildOptions
from edgepack.cli.support import (PathArg, emit, home_from_env, push_progress, registry_flags, registry_options,
                                  source_date_epoch)
from edgepack.oci.imageindex import parse_platforms
from edgepack.targets import TARGET_NAMES, parse_target

_TARGET_FLAGS = ("target_name", "auth_level", "no_auth", "input_path", "output_path", "input_queue",
                 "output_queue", "connection", "module_input", "module_output", "profile", "cpu_model")


def _target_options(func):
    options = [
        click.option("--model", "model_ref", multiple=True, metavar="NAME[:VERSION]",
                     help="A registered model (the latest version when none is given); repeat it for several. "
                          "Without it: the model a v2 deployment names, or none."),
        click.option("--inference-config", "config_path", required=True, type=PathArg(),
                     help="inferenceconfig.json (Azure ML keys, the CLI's environment block included), a YAML "
                          "equivalent, or an Azure ML v2 managed online deployment YAML."),
        click.option("--target", "target_name", required=True, type=click.Choice(TARGET_NAMES),
                     help="Where the image will run."),
        click.option("--auth-level", type=click.Choice(["anonymous", "function", "admin"]),
                     help="functions-http: the function's auth level (default function)."),
        click.option("--no-auth", is_flag=True, default=None,
                     help="webservice, fpga: serve without key authentication."),
        click.option("--input-path", metavar="CONTAINER/PATTERN",
                     help="functions-blob: blobs to score, e.g. input/{blobname}.json."),
        click.option("--output-path", metavar="CONTAINER/PATTERN",
                     help="functions-blob: where results go, e.g. output/{blobname}_out.json."),
        click.option("--input-queue", metavar="NAME", help="functions-servicebus: the queue to score."),
        click.option("--output-queue", metavar="NAME", help="functions-servicebus: the queue results go to."),
        click.option("--connection", metavar="SETTING",
                     help="functions-blob/-servicebus: the app setting holding the connection string."),
        # --output already names the layout folder, so the module's endpoints take the module- prefix
        click.option("--module-input", metavar="NAME", help="iot-edge: the module input to score (default input1)."),
        click.option("--module-output", metavar="NAME",
                     help="iot-edge: the module output results go to (default output1)."),
        click.option("--profile", metavar="NAME",
                     help="fpga: the accelerator profile (default: the one the model was quantized for)."),
        click.option("--cpu-model", metavar="NAME:VERSION",
                     help="fpga: the CPU fallback model (default: the float model the quantized one came from)."),
        click.option("--base-image", metavar="REF", help="Override the target's default base image."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _target(opts: dict[str, Any]):
    """Build the target from the target flags (removed from ``opts``)."""
    flags = {name: opts.pop(name) for name in _TARGET_FLAGS}
    return parse_target(flags.pop("target_name"), **{k: v for k, v in flags.items() if v is not None})


@click.command("plan")
@_target_options
def plan_cmd(model_ref: tuple[str, ...], config_path: Path, base_image: str | None, **opts: Any) -> None:
    """Print the ImagePlan as JSON without building anything (a dry run)."""
    target = _target(opts)
    image_plan = api.plan(home_from_env(), model_ref=model_ref, config_path=config_path, target=target,
                          base_image=base_image)
    click.echo(json.dumps(image_plan.to_dict(), indent=2))


def _platforms(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    try:
        return parse_platforms(value)
    except ValueError as exc:
        raise click.BadParameter(f"{exc}; for example --platform linux/amd64,linux/arm64") from None


@click.command("package")
@_target_options
@click.option("--tag", metavar="REGISTRY/REPO:TAG", help="Name of the image (required with --push).")
@click.option("--push", "do_push", is_flag=True, help="Push the image to --tag's registry.")
@click.option("--output", type=PathArg(), help="Write the image as an OCI image layout to DIR.")
@click.option("--dockerfile-context", type=PathArg(),
              help="Also write an equivalent Dockerfile build context to DIR.")
@click.option("--python-version", metavar="X.Y", help="Resolve dependencies for this Python (default: the base's).")
@click.option("--refresh-deps", is_flag=True, help="Resolve the requirements again instead of reusing the lock.")
@click.option("--platform", "platforms", metavar="LIST", callback=_platforms, default="linux/amd64",
              show_default=True,
              help="Comma-separated platforms (linux/amd64, linux/arm64); several make an OCI image index, each "
                   "image from the base's variant and wheels for that platform (nothing is emulated).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@registry_flags
def package_cmd(model_ref: tuple[str, ...], config_path: Path, base_image: str | None, tag: str | None, do_push: bool,
                output: Path | None, dockerfile_context: Path | None, python_version: str | None,
                refresh_deps: bool, platforms: tuple[str, ...], as_json: bool, registry_username: str | None,
                ca_file: str | None, insecure_http: bool, **opts: Any) -> None:
    """Build the image for a model and target; prints the pushed REF@DIGEST or the layout path and digest."""
    target = _target(opts)
    if output is None and not do_push and dockerfile_context is None:
        stem = "+".join(ref.replace(":", "-") for ref in model_ref) or config_path.stem
        output = Path("edgepack-out") / f"{stem}-{target.name}"
    options = BuildOptions(mtime=source_date_epoch(), python_version=python_version,
                           refresh_deps=refresh_deps)
    bar, update = push_progress()
    with bar if bar is not None else nullcontext():
        result = api.package(home_from_env(), model_ref=model_ref, config_path=config_path, target=target,
                             base_image=base_image, output=output, tag=tag, push_image_to_registry=do_push,
                             dockerfile_context=dockerfile_context,
                             registry=registry_options(registry_username, ca_file, insecure_http),
                             options=options, progress=update, env=dict(os.environ), platforms=platforms)
    lines = [str(result.pushed.ref)] if result.pushed else []
    if result.layout:
        lines.append(f"{result.layout}@{result.digest}")
    if result.context:
        lines.append(f"{result.context}/Dockerfile")
    emit(result.to_dict(), as_json, "\n".join(lines))


@click.command("push")
@click.argument("layout_dir", type=PathArg(file_okay=False))
@click.option("--to", "to", required=True, metavar="REGISTRY/REPO:TAG")
@click.option("--json", "as_json", is_flag=True)
@registry_flags
def push_cmd(layout_dir: Path, to: str, as_json: bool, registry_username: str | None, ca_file: str | None,
             insecure_http: bool) -> None:
    """Push an OCI image layout; prints REGISTRY/REPO@sha256:..."""
    bar, update = push_progress()
    with bar if bar is not None else nullcontext():
        result = api.push(layout_dir, to, registry=registry_options(registry_username, ca_file, insecure_http),
                          progress=update)
    data = {"ref": str(result.ref), "uploaded": list(result.uploaded), "skipped": list(result.skipped),
            "mounted": list(result.mounted), "bytes_sent": result.bytes_sent}
    emit(data, as_json, str(result.ref))
