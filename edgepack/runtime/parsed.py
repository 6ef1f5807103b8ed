"""Parse a JSON request once. The runtime parses a body to validate it against the input schema, and the entry
script's run() parses the same text again (``json.loads(raw_data)``, as Azure ML scripts do). run() receives a
``ParsedText``: a ``str`` equal to the body that carries the runtime's parsed value, and the first plain
``json.loads`` of it returns that value instead of parsing again. Later or customised calls (``object_hook``,
``parse_float``...) parse as usual, so what run() sees is exactly what it would have parsed itself.
"""

from __future__ import annotations

import json
from typing import Any

_MISSING = object()
real_loads = json.loads  # the parser itself, for the runtime's own parsing


class ParsedText(str):
    """Request text plus the value parsed from it, handed out once."""

    def __new__(cls, text: str, value: Any) -> "ParsedText":
        self = super().__new__(cls, text)
        self.__dict__["value"] = value
        return self


def loads(s: Any, *args: Any, **kwargs: Any) -> Any:
    """``json.loads``, which hands a ParsedText's value over instead of parsing it a second time."""
    if type(s) is ParsedText and not args and not kwargs:
        value = s.__dict__.pop("value", _MISSING)
        if value is not _MISSING:
            return value
    return real_loads(s, *args, **kwargs)


def install() -> None:
    """Make ``json.loads`` hand parsed values over (idempotent; call before the entry script is imported)."""
    json.loads = loads
