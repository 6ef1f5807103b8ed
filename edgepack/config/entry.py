"""Static checks of an entry script: ``init()`` and ``run(data)`` must exist. Parses with ast; never imports."""

from __future__ import annotations

import ast
from pathlib import Path


def _required_positional(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    args = fn.args
    positional = args.posonlyargs + args.args
    return len(positional) - len(args.defaults)


def _accepts_one(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    positional = [a.arg for a in fn.args.posonlyargs + fn.args.args]
    required = _required_positional(fn) - (1 if positional[1:2] == ["request_headers"] else 0)
    return required <= 1 and (len(positional) >= 1 or fn.args.vararg is not None)


def _decorator_names(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    names = set()
    for dec in fn.decorator_list:
        node = dec.func if isinstance(dec, ast.Call) else dec
        names.add(node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", ""))
    return names


def run_decorators(path: Path) -> set[str]:
    """The names of the decorators on the script's ``run`` (``input_schema``, ``rawhttp``...); empty if none."""
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except (SyntaxError, OSError, UnicodeDecodeError, RecursionError, MemoryError):
        return set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "run":
            return _decorator_names(node)
    return set()


def _in_try_blocks(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside a try block (optional imports, by the script's own design)."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            for child in node.body:
                inside.update(id(n) for n in ast.walk(child) if isinstance(n, (ast.Import, ast.ImportFrom)))
    return inside


def script_imports(path: Path, *, optional: bool = True) -> dict[str, set[str]]:
    """Modules the script imports (anywhere in it; ``optional=False`` leaves out those inside try blocks), each
    with the names taken from it by ``from ... import``. Empty when the script cannot be parsed."""
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except (SyntaxError, OSError, UnicodeDecodeError, RecursionError, MemoryError):
        return {}
    skip = set() if optional else _in_try_blocks(tree)
    found: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.setdefault(alias.name, set())
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.setdefault(node.module, set()).update(a.name for a in node.names if a.name != "*")
    return found


def check_entry_script(path: Path, field: str) -> list[str]:
    """Problems with the entry script at ``path`` (empty when it defines usable ``init()`` and ``run(data)``)."""
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except SyntaxError as exc:
        return [f"{field}: '{path.name}' has a syntax error at line {exc.lineno}: {exc.msg}"]
    except (OSError, UnicodeDecodeError) as exc:
        return [f"{field}: cannot read '{path.name}': {exc}"]
    except (RecursionError, MemoryError):
        return [f"{field}: '{path.name}' has an expression nested too deeply for Python to compile"]
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
    elif {"rawhttp", "input_schema"} <= _decorator_names(run):
        problems.append(f"{field}: run() in '{path.name}' is both @rawhttp and @input_schema-decorated; Azure ML "
                        "serves either raw requests or schema parameters, not both")
    elif not _accepts_one(run) and not _decorator_names(run) & {"input_schema", "rawhttp"}:
        problems.append(f"{field}: run() in '{path.name}' must take the request data as its one argument "
                        "(and optionally request_headers), unless inference_schema's @input_schema names them")
    return problems


def defines_function(path: Path, name: str) -> bool:
    """True when the script at ``path`` defines a top-level function ``name`` (False if it cannot be parsed)."""
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except (SyntaxError, OSError, UnicodeDecodeError, RecursionError, MemoryError):
        return False
    return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name for node in tree.body)
