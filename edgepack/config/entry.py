"""Static checks of an entry script: ``init()`` and ``run(data)`` must exist. Parses with ast; never imports."""

from __future__ import annotations

import ast
from pathlib import Path


def _required_positional(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    args = fn.args
    positional = args.posonlyargs + args.args
    return len(positional) - len(args.defaults)


def _accepts_one(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    positional = fn.args.posonlyargs + fn.args.args
    return _required_positional(fn) <= 1 and (len(positional) >= 1 or fn.args.vararg is not None)


def check_entry_script(path: Path, field: str) -> list[str]:
    """Problems with the entry script at ``path`` (empty when it defines usable ``init()`` and ``run(data)``)."""
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except SyntaxError as exc:
        return [f"{field}: '{path.name}' has a syntax error at line {exc.lineno}: {exc.msg}"]
    except (OSError, UnicodeDecodeError) as exc:
        return [f"{field}: cannot read '{path.name}': {exc}"]
    functions = {node.name: node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    problems = []
    init = functions.get("init")
    if init is None:
        problems.append(f"{field}: '{path.name}' defines no init() function")
    elif _required_positional(init) > 0:
        problems.append(f"{field}: init() in '{path.name}' must take no required arguments")
    run = functions.get("run")
    if run is None:
        problems.append(f"{field}: '{path.name}' defines no run() function")
    elif not _accepts_one(run):
        problems.append(f"{field}: run() in '{path.name}' must take exactly one argument (the request data)")
    return problems


def defines_function(path: Path, name: str) -> bool:
    """True when the script at ``path`` defines a top-level function ``name`` (False if it cannot be parsed)."""
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except (SyntaxError, OSError, UnicodeDecodeError):
        return False
    return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name for node in tree.body)
