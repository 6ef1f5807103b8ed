"""The ``edgepack`` command line: parse, call ``edgepack.api``, print. The one place errors become exit codes.

Each command group has its module in this package. Results go to stdout (one reference or URL per line, or JSON
with ``--json``); progress and logs go to stderr. Environment variables are read by the CLI and nowhere else in
the library: ``EDGEPACK_HOME``, ``SOURCE_DATE_EPOCH``, ``EDGEPACK_REGISTRY_USERNAME`` /
``EDGEPACK_REGISTRY_PASSWORD``, and the variable named by ``--registry-password-env``.
"""

from __future__ import annotations

import logging
import sys

import click

from edgepack import __version__
from edgepack.cli.attest import provenance_cmd, sbom_cmd, verify_cmd
from edgepack.cli.deploy import deploy
from edgepack.cli.edge import edge
from edgepack.cli.fleet import fleet
from edgepack.cli.fpga import fpga
from edgepack.cli.images import package_cmd, plan_cmd, push_cmd
from edgepack.cli.models import model
from edgepack.cli.profile import profile_cmd
from edgepack.cli.runs import keys_cmd, logs_cmd, run_cmd, stop_cmd
from edgepack.errors import EdgepackError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgepack")
@click.option("-v", "--verbose", count=True, help="More progress on stderr (-vv for debug).")
def cli(verbose: int) -> None:
    """Package registered ML models as OCI images for Azure Functions, IoT Edge, FPGA and web services."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, stream=sys.stderr, format="%(message)s")


for command in (model, plan_cmd, package_cmd, push_cmd, run_cmd, stop_cmd, logs_cmd, keys_cmd, deploy, edge, fpga,
                fleet, profile_cmd, sbom_cmd, provenance_cmd, verify_cmd):
    cli.add_command(command)


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

