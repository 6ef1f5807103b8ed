"""Index a generated function_app.py with the azure-functions library, as the Python worker does.

Side effects: writes the source to a temporary folder and imports it. The result (each function's name and
raw bindings) goes into the image as the ``io.edgepack.functions`` label, so deployers (Kubernetes + KEDA)
work from the indexed metadata without pulling layers, and without ``function.json`` files, which v2 apps
do not have.
"""

from __future__ import annotations

import json
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from edgepack.errors import PackagingError
from edgepack.runtime.modules import load_file

LABEL = "io.edgepack.functions"


def index_function_app(source: bytes) -> list[dict[str, Any]]:
    """``[{"name": ..., "bindings": [...]}]`` for every function of the app, bindings as the host receives them.

    Raises:
        PackagingError: the app does not import or index (for example two triggers on one function).
    """
    import azure.functions as func  # imported here: only function targets need it

    name = f"_edgepack_index_{uuid.uuid4().hex}"
    with tempfile.TemporaryDirectory(prefix="edgepack-index-") as tmp:
        path = Path(tmp) / "function_app.py"
        path.write_bytes(source)
        try:
            module = load_file(name, str(path), register=False)
            apps = [v for v in vars(module).values() if isinstance(v, func.FunctionRegister)]
            if len(apps) != 1:
                raise ValueError(f"expected one top-level FunctionApp, found {len(apps)}")
            functions = apps[0].get_functions()
        except Exception as exc:  # noqa: BLE001 - any failure here means the generated app is unusable
            raise PackagingError(f"indexing the generated function_app.py: {exc}",
                                 hint="Check the target's options (paths, queue names).") from exc
        finally:
            sys.modules.pop(name, None)
    return [{"name": f.get_function_name(), "bindings": [json.loads(b) for b in f.get_raw_bindings()]}
            for f in functions]
