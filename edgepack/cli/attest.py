"""``edgepack sbom``, ``edgepack provenance`` and ``edgepack verify``: an image's supply-chain records."""

from __future__ import annotations

import json
import os

import click

from edgepack import api
from edgepack.cli.support import emit, home_from_env, registry_flags, registry_options
from edgepack.errors import AttestationError

_SOURCE = "REF is a registry reference (REGISTRY/REPO:TAG or @sha256:...) or an OCI layout folder."


def _printed(document: bytes) -> str:
    return json.dumps(json.loads(document), indent=2, sort_keys=True)


def _document_command(kind: str, summary: str) -> click.Command:
    @click.command(kind, help=f"{summary} {_SOURCE}")
    @click.argument("source", metavar="REF")
    @click.option("--platform", metavar="OS/ARCH", help="The platform's image of a multi-platform image.")
    @registry_flags
    def command(source: str, platform: str | None, registry_username: str | None, ca_file: str | None,
                insecure_http: bool) -> None:
        document = api.attestation(source, kind, platform=platform,
                                   registry=registry_options(registry_username, ca_file, insecure_http))
        click.echo(_printed(document))

    return command


sbom_cmd = _document_command("sbom", "Print the image's SBOM (CycloneDX 1.6 JSON).")
provenance_cmd = _document_command("provenance", "Print the image's provenance (in-toto statement, SLSA v1).")


@click.command("verify", help="Rebuild an image from the inputs its provenance records and check that the digest "
                              "is the same; names the inputs or layers that differ (exit 1). " + _SOURCE)
@click.argument("source", metavar="REF")
@click.option("--platform", metavar="OS/ARCH", help="The platform's image of a multi-platform image.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@registry_flags
def verify_cmd(source: str, platform: str | None, as_json: bool, registry_username: str | None, ca_file: str | None,
               insecure_http: bool) -> None:
    result = api.verify(home_from_env(), source, platform=platform,
                        registry=registry_options(registry_username, ca_file, insecure_http), env=dict(os.environ))
    if result.differences:
        if as_json:
            emit(result.to_dict(), True, "")
        raise AttestationError(f"verifying '{source}': the image is not what its recorded inputs build",
                               hint="; ".join(result.differences))
    emit(result.to_dict(), as_json, f"verified {result.digest}: rebuilt from its recorded inputs")
