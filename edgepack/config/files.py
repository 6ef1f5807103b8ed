"""Reading structured files (JSON, YAML): the only place config files are parsed."""

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
    except RecursionError:
        raise FileProblem(f"'{path.name}' nests its values deeper than edgepack reads") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise FileProblem(f"'{path.name}' is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from exc
