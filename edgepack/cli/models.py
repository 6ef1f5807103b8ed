"""``edgepack model``: register and manage models in the local store."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgepack import api
from edgepack.cli.support import emit, home_from_env, parse_pairs


@click.group()
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
