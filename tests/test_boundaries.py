"""Import direction, checked on the source: in-image code imports only what images hold (an allow-list), and the
library imports only downwards through its layers."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IN_IMAGE = [ROOT / "edgepack" / "runtime", ROOT / "triggers", ROOT / "device_agents", ROOT / "fpga" / "runtime"]


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


# What each in-image package may import besides the standard library: an allow-list of packages (a dotted entry
# allows that package and what is under it), relative imports included.
IN_IMAGE_ALLOWED = {
    "edgepack/runtime": {"edgepack", "numpy", "onnxruntime", "azureml", "inference_schema", "werkzeug"},
    "triggers": {"edgepack", "triggers", "azure", "numpy"},
    "device_agents": {"edgepack", "device_agents", "numpy", "onnxruntime", "azure.iot.device"},
    "fpga/runtime": {"edgepack", "fpga.runtime", "numpy", "onnxruntime"},
}
# The build side of fpga/ (quantization, checks, estimate, evaluation) never goes into an image; it may use onnx
# and edgepack's errors, nothing else of edgepack.
FPGA_BUILD_ALLOWED = {"edgepack.errors", "fpga", "numpy", "onnx", "onnxruntime"}
# The library's layers, lowest first: a package may import its own layer and those below, never above.
# The runtime imports nothing of edgepack but itself (it runs in images), so it sits at the bottom: the contract
# it owns (settings, labels, model artifacts) is read by the layers above.
LAYERS = [("errors", "runtime"), ("oci", "config", "targets", "home"), ("models",), ("registry",),
          ("build", "packagers", "deploy"), ("fleet",), ("profiling",), ("api",), ("cli",)]


def _all_imports(path: Path) -> set[str]:
    """Absolute names imported by ``path``, relative imports resolved against its package."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = list(package[:len(package) - node.level + 1]) if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)  # ``from edgepack import api``
    return names


def test_in_image_code_imports_only_what_the_image_has():
    offenders = []
    for folder, allowed in IN_IMAGE_ALLOWED.items():
        for path in _files(ROOT / folder):
            for name in _all_imports(path):
                top = name.split(".")[0]
                if top in sys.stdlib_module_names:
                    continue
                listed = any(name == entry or name.startswith(entry + ".") for entry in allowed)
                if not listed or (top == "edgepack" and name != "edgepack" and not name.startswith("edgepack.runtime")):
                    offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert offenders == []


def test_the_fpga_build_side_imports_only_onnx_numpy_onnxruntime_and_errors():
    offenders = []
    for path in _files(ROOT / "fpga"):
        if "runtime" in path.relative_to(ROOT / "fpga").parts:
            continue
        for name in _all_imports(path):
            if name.split(".")[0] in sys.stdlib_module_names or name in ("edgepack", "fpga"):
                continue
            if not any(name == entry or name.startswith(entry + ".") for entry in FPGA_BUILD_ALLOWED):
                offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert offenders == []


def _layer(module: str) -> int | None:
    for number, names in enumerate(LAYERS):
        if module in names:
            return number
    return None


def test_the_library_imports_only_downwards():
    offenders = []
    for path in _files(ROOT / "edgepack"):
        rel = path.relative_to(ROOT / "edgepack").with_suffix("").parts
        if rel[0] in ("devtools", "__init__", "__main__", "daemon"):
            continue
        own = _layer(rel[0])
        for name in _all_imports(path):
            parts = name.split(".")
            if parts[0] != "edgepack" or len(parts) < 2:
                continue
            target = _layer(parts[1])
            if own is not None and target is not None and target > own:
                offenders.append(f"edgepack/{'/'.join(rel)}: {name}")
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
