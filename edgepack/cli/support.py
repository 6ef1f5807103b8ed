"""Helpers shared by the CLI's command modules: where the home is, K=V options, output, registry flags."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import click

from edgepack import api
from edgepack.errors import EdgepackError
from edgepack.home import Home


class Finite(click.FloatRange):
    """A float in a range that is a real number (click's FloatRange lets ``nan`` through every bound)."""

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class PathArg(click.Path):
    """A path (as ``pathlib.Path``) that is not empty: click would take ``''`` for the current directory."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(path_type=Path, **kwargs)

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            self.fail("is empty: name a file or directory", param, ctx)
        return super().convert(value, param, ctx)


def home_from_env() -> Home:
    """$EDGEPACK_HOME, else ~/.edgepack."""
    return Home(Path(os.environ.get("EDGEPACK_HOME") or Path.home() / ".edgepack"))


def parse_pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    """``K=V`` option values as a dict; a usage error names the option."""
    out = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected K=V, got '{value}'", param_hint=option)
        out[key] = val
    return out


def emit(data: Any, as_json: bool, text: str) -> None:
    """JSON with --json, else the text."""
    click.echo(json.dumps(data, indent=2, sort_keys=True) if as_json else text)


def registry_options(username: str | None, ca_file: str | None, insecure_http: bool) -> api.RegistryOptions:
    """Registry options from the flags and EDGEPACK_REGISTRY_USERNAME/PASSWORD."""
    password = os.environ.get("EDGEPACK_REGISTRY_PASSWORD")
    username = username or os.environ.get("EDGEPACK_REGISTRY_USERNAME")
    return api.RegistryOptions(username=username, password=password if username else None, ca_file=ca_file,
                               insecure_http=insecure_http)


def registry_flags(func):
    """--registry-username, --ca-file and --insecure-http."""
    func = click.option("--insecure-http", is_flag=True,
                        help="Allow plain HTTP to a non-loopback registry (loopback is allowed anyway).")(func)
    func = click.option("--ca-file", type=click.Path(exists=True, dir_okay=False),
                        help="Trust this CA bundle for the registry's TLS certificate.")(func)
    func = click.option("--registry-username", metavar="USER",
                        help="Registry user; the password comes from EDGEPACK_REGISTRY_PASSWORD. "
                             "Without it, ~/.docker/config.json (auths, credHelpers, credsStore) is used.")(func)
    return func


def push_progress():
    """A push progress callback drawing on stderr, or None when stderr is not a terminal."""
    if not sys.stderr.isatty():
        return None, None
    from rich.progress import Progress  # imported lazily: only interactive pushes draw bars

    bar = Progress(transient=True, console=None)
    tasks: dict[str, Any] = {}

    def update(digest: str, sent: int, total: int) -> None:
        if digest not in tasks:
            tasks[digest] = bar.add_task(digest[7:19], total=total)
        bar.update(tasks[digest], completed=sent)

    return bar, update


def source_date_epoch() -> int:
    """``SOURCE_DATE_EPOCH`` (default 0): the timestamp written into layers and the image config.

    Raises:
        EdgepackError: it is not a whole number of seconds within what tar and OCI can record.
    """
    raw = os.environ.get("SOURCE_DATE_EPOCH") or "0"
    if not (raw.isascii() and raw.isdigit()) or int(raw) > 8**11 - 1:
        raise EdgepackError(f"reading SOURCE_DATE_EPOCH '{raw}': not a number of seconds since 1970 "
                            f"(0 to {8**11 - 1})",
                            hint="Set it to a Unix timestamp, such as the last commit's: git log -1 --format=%ct.")
    return int(raw)
