"""Import direction, checked on the source: in-image code stays free of build-time libraries."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IN_IMAGE = [ROOT / "edgepack" / "runtime", ROOT / "triggers", ROOT / "device_agents", ROOT / "fpga"]
FORBIDDEN = {"docker", "click", "yaml", "httpx", "rich", "requests"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*.py") if "__pycache__" not in p.parts] if folder.exists() else []


def test_in_image_code_imports_no_build_time_library():
    offenders = []
    for folder in IN_IMAGE:
        for path in _files(folder):
            for name in _imports(path):
                top = name.split(".")[0]
                runtime_only = name == "edgepack" or name.startswith("edgepack.runtime")
                if top in FORBIDDEN or (top == "edgepack" and not runtime_only):
                    offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert offenders == []


def test_errors_and_package_init_import_nothing_from_edgepack():
    for path in (ROOT / "edgepack" / "errors.py", ROOT / "edgepack" / "__init__.py"):
        assert not [n for n in _imports(path) if n.split(".")[0] == "edgepack"], path


def test_only_the_daemon_adapter_imports_docker():
    users = [p.relative_to(ROOT).as_posix() for p in _files(ROOT / "edgepack")
             if any(n.split(".")[0] == "docker" for n in _imports(p))]
    assert users in ([], ["edgepack/daemon.py"])


def test_the_in_image_folders_exist():
    for folder in IN_IMAGE:
        assert folder.is_dir(), folder
