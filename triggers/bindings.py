"""What every non-HTTP trigger driver shares: app-setting expressions, output values, start-up errors."""

from __future__ import annotations

import re
from typing import Any, Mapping

_SETTING = re.compile(r"%([A-Za-z_][A-Za-z0-9_]*)%")


class TriggerError(Exception):
    """A trigger cannot start: a missing connection setting or an unresolvable %AppSetting%."""


class OutValue:
    """An output binding's value holder (``func.Out`` is abstract; the Python worker uses its own too)."""

    def __init__(self) -> None:
        self.value: Any = None

    def set(self, value: Any) -> None:
        """Set the value the binding writes."""
        self.value = value

    def get(self) -> Any:
        """The value set, or None."""
        return self.value


def resolve_settings(text: str, env: Mapping[str, str]) -> str:
    """Replace ``%Name%`` with the app setting's value.

    Raises:
        TriggerError: a named setting is not set.
    """
    def one(m: re.Match[str]) -> str:
        if m.group(1) not in env:
            raise TriggerError(f"app setting '{m.group(1)}' used in '{text}' is not set")
        return env[m.group(1)]
    return _SETTING.sub(one, text)
