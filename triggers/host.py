"""Indexing a v2 function app as the Python worker does: import function_app.py, find the one FunctionApp,
call ``get_functions()``, and read each function's raw bindings. Side effect: imports the app module.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable

import azure.functions as func

from edgepack.runtime.modules import load_file


class IndexError_(Exception):
    """The app cannot be indexed (no or several FunctionApp instances, a function without a trigger...)."""


@dataclass(frozen=True)
class IndexedFunction:
    """One function: its name, raw bindings (as the worker sends them to the host) and the user callable."""

    name: str
    bindings: tuple[dict[str, Any], ...]
    call: Callable[..., Any]

    @property
    def trigger(self) -> dict[str, Any]:
        """The trigger binding (the one whose type ends with 'Trigger')."""
        return next(b for b in self.bindings if b["type"].endswith("Trigger"))


def load_app(script_root: str, script: str | None = None) -> list[IndexedFunction]:
    """Index ``script_root/function_app.py`` (or ``$PYTHON_SCRIPT_FILE_NAME``).

    Raises:
        IndexError_: the file is missing, has no FunctionApp, several, or the library rejects a function.
    """
    script = script or os.environ.get("PYTHON_SCRIPT_FILE_NAME", "function_app.py")
    path = os.path.join(script_root, script)
    if not os.path.isfile(path):
        raise IndexError_(f"indexing '{path}': no such file")
    if script_root not in sys.path:
        sys.path.insert(0, script_root)
    name = os.path.splitext(script)[0]
    module = load_file(name, path)
    apps = [v for v in vars(module).values() if isinstance(v, func.FunctionRegister)]
    if len(apps) != 1:
        raise IndexError_(f"indexing '{path}': expected one top-level FunctionApp, found {len(apps)}")
    try:
        functions = apps[0].get_functions()
    except ValueError as exc:
        raise IndexError_(f"indexing '{path}': {exc}") from exc
    return [IndexedFunction(f.get_function_name() or f.get_user_function().__name__,
                            tuple(json.loads(b) for b in f.get_raw_bindings()), f.get_user_function())
            for f in functions]


def function_json(fn: IndexedFunction) -> dict[str, Any]:
    """The function.json equivalent of an indexed function (for snapshots and manifests)."""
    return {"scriptFile": "function_app.py", "bindings": list(fn.bindings)}
