"""Reading structured files (JSON, YAML) and requirement lists: the only place config files are parsed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


class FileProblem(Exception):
    """A file could not be read or parsed; the message names where."""


def read_structured(path: Path) -> Any:
    """Parse a ``.json`` file with json and anything else with ``yaml.safe_load`` (YAML is a JSON superset)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise FileProblem(f"cannot read '{path}': {exc.strerror if isinstance(exc, OSError) else exc}") from exc
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise FileProblem(f"'{path.name}' is not valid JSON: {exc.msg} at line {exc.lineno}, "
                          f"column {exc.colno}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise FileProblem(f"'{path.name}' is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from exc


def requirement_lines(text: str, field: str) -> tuple[list[str], list[str]]:
    """Requirement lines of a pip requirements file, and a problem for each line edgepack cannot honour.

    Options and local paths are refused because dependencies are resolved on the host for another platform.
    """
    reqs: list[str] = []
    problems: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        spec = line.split(";")[0]
        local = "@ file:" in spec.replace("@file:", "@ file:") or spec.endswith((".whl", ".tar.gz", ".zip")) \
            and "://" not in spec
        if line.startswith(("-", ".", "/", "file:")) or local or ("://" in spec and "@" not in spec):
            problems.append(f"{field}: line {number} '{line}': options and local paths are not supported "
                            "(dependencies are resolved from the package index for the image's platform)")
            continue
        reqs.append(line)
    return reqs, problems
