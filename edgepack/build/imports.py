"""Does the image provide what the entry script imports? Checked at package time, so a missing package is a
named error now rather than a container that fails to start or a 500 later.

Pure apart from listing folders. A module counts as provided when the base image has it (standard library or
installed packages, read from its layers), when the dependency layer installs it, when the source directory
holds it, or when edgepack's runtime brings it (``edgepack``, the ``azureml`` compatibility modules). Imports
inside a ``try`` block are optional by the script's own design and are not checked.
"""

from __future__ import annotations

import sys
from pathlib import Path

from edgepack.config.entry import script_imports
from edgepack.errors import PackagingError

# Import names whose package on the index is named otherwise, for the hint.
PACKAGE_NAMES = {"sklearn": "scikit-learn", "cv2": "opencv-python-headless", "PIL": "pillow", "yaml": "pyyaml",
                 "skimage": "scikit-image", "bs4": "beautifulsoup4", "dateutil": "python-dateutil",
                 "google.protobuf": "protobuf", "tensorflow_hub": "tensorflow-hub", "inference_schema":
                 "inference-schema", "onnxruntime": "onnxruntime", "lightgbm": "lightgbm", "xgboost": "xgboost"}
RUNTIME_MODULES = frozenset({"edgepack", "azureml", "triggers"})


def required_imports(script: Path) -> set[str]:
    """Top-level modules ``script`` imports outside try blocks (empty when it cannot be parsed)."""
    return {module.split(".")[0] for module in script_imports(script, optional=False)}


def top_level_modules(folder: Path) -> set[str]:
    """Modules importable from ``folder`` as a ``sys.path`` entry: packages, modules and extensions."""
    if not folder.is_dir():
        return set()
    names = set()
    for item in folder.iterdir():
        if item.is_dir() and not item.name.endswith((".dist-info", ".egg-info", ".data")):
            names.add(item.name)
        elif item.suffix in (".py", ".so", ".pth") or ".cpython-" in item.name:
            names.add(item.name.split(".")[0])
    return names


def missing_imports(script: Path, *, source_dir: Path | None, sites: list[Path],
                    base_modules: frozenset[str]) -> list[str]:
    """What ``script`` imports that nothing in the image provides, sorted."""
    provided = set(base_modules) | RUNTIME_MODULES | set(sys.builtin_module_names)
    for site in sites:
        provided |= top_level_modules(site)
    for folder in {source_dir or script.parent, script.parent}:
        provided |= top_level_modules(folder)
    return sorted(required_imports(script) - provided)


def check(script: Path, *, source_dir: Path | None, sites: tuple[Path, ...], base_modules: frozenset[str],
          base: str) -> None:
    """Refuse an image that lacks what the entry script imports. The base's modules are read from its own layers,
    so a user's base image with its own packages counts too.

    Raises:
        PackagingError: a module the script imports is provided by nothing in the image.
    """
    if "os" not in base_modules:
        return  # the base's Python library was not found in its layers: nothing to check against
    missing = missing_imports(script, source_dir=source_dir, sites=list(sites), base_modules=base_modules)
    if missing:
        raise PackagingError(f"packaging '{script.name}': it imports {', '.join(missing)}, which neither the "
                             f"environment nor the base image {base} provides", hint=hint_for(missing))


def hint_for(modules: list[str]) -> str:
    """Which packages to add, by their names on the package index where they differ from the import."""
    named = [f"{m} (package {PACKAGE_NAMES[m]})" if m in PACKAGE_NAMES and PACKAGE_NAMES[m] != m else m
             for m in modules]
    return (f"Add the package{'s' if len(modules) > 1 else ''} providing {', '.join(named)} to the environment "
            "(the conda file's pip section, requirementsFile or pipRequirements), or use a base image that has "
            "them.")
