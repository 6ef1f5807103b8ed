"""Loading a Python file as a module: the entry script, a generated function_app.py."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from edgepack.runtime.settings import RuntimeSetupError


def load_file(name: str, path: str, *, register: bool = True) -> ModuleType:
    """Execute the file at ``path`` as module ``name`` (listed in ``sys.modules`` first when ``register``, as an
    import would, so the module's own ``pickle``/dataclass machinery finds it).

    Raises:
        RuntimeSetupError: ``path`` is not a Python file. Whatever the module raises when it runs.
    """
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise RuntimeSetupError(f"loading '{path}': not a Python file")
    module = importlib.util.module_from_spec(spec)
    if register:
        sys.modules[name] = module
    writes = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # no __pycache__ in the user's source folder (the module's own imports included)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        if register:
            sys.modules.pop(name, None)
        raise
    finally:
        sys.dont_write_bytecode = writes
    return module
