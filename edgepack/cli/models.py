"""``edgepack model``: register and manage models in the local store."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path

import click

from edgepack import api
from edgepack.cli.support import (PathArg, emit, home_from_env, parse_pairs, push_progress, registry_flags,
                                  registry_options)


@click.group()
def model() -> None:
    """Register and manage models in the local store ($EDGEPACK_HOME/models)."""


@model.command("register")
@click.argument("name")
@click.argument("path", type=PathArg())
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
@click.argument("dest", type=PathArg())
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


@model.command("push")
@click.argument("ref", metavar="NAME[:VERSION]")
@click.option("--to", "to", required=True, metavar="REGISTRY/REPO[:TAG]",
              help="Where to store it (the tag defaults to the model's version).")
@click.option("--json", "as_json", is_flag=True, help="Print the pushed reference and what was sent as JSON.")
@registry_flags
def model_push(ref: str, to: str, as_json: bool, registry_username: str | None, ca_file: str | None,
               insecure_http: bool) -> None:
    """Store a registered model in an OCI registry as an artifact (a layer per file); prints REF@sha256:..."""
    bar, update = push_progress()
    with bar if bar is not None else nullcontext():
        result = api.push_model(home_from_env(), ref, to,
                                registry=registry_options(registry_username, ca_file, insecure_http), progress=update)
    emit({"ref": str(result.ref), "uploaded": list(result.uploaded), "skipped": list(result.skipped)}, as_json,
         str(result.ref))


@model.command("pull")
@click.argument("ref", metavar="REGISTRY/REPO[:TAG|@DIGEST]")
@click.option("--json", "as_json", is_flag=True, help="Print the registered model as JSON.")
@registry_flags
def model_pull(ref: str, as_json: bool, registry_username: str | None, ca_file: str | None,
               insecure_http: bool) -> None:
    """Register a model pushed with 'model push' under its own name and version; prints NAME:VERSION and sha256."""
    artifact, digest = api.pull_model(home_from_env(), ref,
                                      registry=registry_options(registry_username, ca_file, insecure_http))
    emit({**artifact.to_dict(), "manifest_digest": digest}, as_json, f"{artifact.ref} sha256:{artifact.sha256}")
