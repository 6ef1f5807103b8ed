"""Layer specs shared by every target: the in-image runtime, the user's source directory and the model files.

Reads files' contents to hash them (the only side effect); everything returned is a pure value.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

import edgepack
from edgepack.config.schema import InferenceConfig
from edgepack.errors import PackagingError
from edgepack.models.artifact import ModelArtifact
from edgepack.oci.layer import FileEntry, LayerSpec

RUNTIME_LIB = "/opt/edgepack/lib"
SITE_PACKAGES = "/opt/edgepack/site-packages"
RUNTIME_CONFIG = "/opt/edgepack/runtime.json"
RUNTIME_REQUIREMENTS = ("numpy", "onnxruntime")
_SKIP_DIRS = {"__pycache__", ".git", ".venv", "venv", ".mypy_cache", ".pytest_cache", ".ipynb_checkpoints"}
_SKIP_SUFFIXES = (".pyc", ".pyo")


def requirements(*groups: tuple[str, ...]) -> tuple[str, ...]:
    """Requirement lines of every group in order, each exact line once."""
    return tuple(dict.fromkeys(line for group in groups for line in group))


def _python_files(root: Path, dest: str) -> list[FileEntry]:
    return [FileEntry.from_file(str(PurePosixPath(dest) / p.relative_to(root).as_posix()), p)
            for p in sorted(root.rglob("*")) if p.is_file() and p.suffix in (".py", ".json", ".tmpl")
            and "__pycache__" not in p.parts and "tests" not in p.relative_to(root).parts]


def runtime_layer(*, with_triggers: bool, extra: tuple[FileEntry, ...] = ()) -> LayerSpec:
    """The edgepack runtime (and, for function images, the trigger adapters) read as files, not imported."""
    pkg = Path(edgepack.__file__).parent
    entries = [FileEntry.from_file(f"{RUNTIME_LIB}/edgepack/__init__.py", pkg / "__init__.py")]
    entries += _python_files(pkg / "runtime", f"{RUNTIME_LIB}/edgepack/runtime")
    if with_triggers:
        triggers = Path(str(resources.files("triggers")))
        entries += _python_files(triggers, f"{RUNTIME_LIB}/triggers")
    return LayerSpec("edgepack-runtime", tuple(entries) + extra, comment="edgepack runtime and target adapter")


def source_layer(config: InferenceConfig, dest: str, *, reserved: tuple[str, ...] = ()) -> LayerSpec:
    """The user's source directory (or only the entry script when none is given), placed at ``dest``.

    Raises:
        PackagingError: a source file would replace a file the target generates (for example function_app.py).
    """
    root = config.source_directory or config.entry_script.parent
    if config.source_directory is None:
        files = [config.entry_script]
    else:
        files = [p for p in sorted(root.rglob("*"))
                 if p.is_file() and not p.is_symlink() and not _SKIP_DIRS.intersection(p.relative_to(root).parts)
                 and not p.name.endswith(_SKIP_SUFFIXES)]
    entries = []
    for path in files:
        rel = path.relative_to(root).as_posix()
        if rel in reserved:
            raise PackagingError(
                f"packaging source directory '{root}': '{rel}' would replace the file this target generates",
                hint=f"Rename or remove '{rel}' from the source directory.")
        entries.append(FileEntry.from_file(str(PurePosixPath(dest) / rel), path))
    return LayerSpec("source", tuple(entries), comment=f"source directory {root.name}")


def model_dir(model: ModelArtifact, app_root: str) -> str:
    """Where the model's files go in the image: Azure ML's ``azureml-models/<name>/<version>`` layout."""
    return f"{app_root}/azureml-models/{model.name}/{model.version}"


def model_layer(model: ModelArtifact, *, app_root: str, runtime_config: dict[str, Any]) -> LayerSpec:
    """The registered model's files plus the runtime config that names them: the layer a model update changes."""
    dest = model_dir(model, app_root)
    entries = [FileEntry.from_file(f"{dest}/{f.path}", model.root / f.path, sha256=f.sha256) for f in model.files]
    config_bytes = (json.dumps(runtime_config, indent=2, sort_keys=True) + "\n").encode()
    entries.append(FileEntry.from_bytes(RUNTIME_CONFIG, config_bytes))
    return LayerSpec("model", tuple(entries), comment=f"model {model.ref} {model.sha256[:12]}")


def runtime_config(model: ModelArtifact, config: InferenceConfig, *, target: str, app_root: str,
                   source_dest: str, auth_enabled: bool, auth_level: str = "anonymous") -> dict[str, Any]:
    """The JSON the in-image runtime reads from ``EDGEPACK_RUNTIME_CONFIG``."""
    src_root = config.source_directory or config.entry_script.parent
    return {
        "target": target,
        "entry_script": str(PurePosixPath(source_dest) / config.entry_script.relative_to(src_root).as_posix()),
        "source_dir": source_dest,
        "model_dir": model_dir(model, app_root),
        "model": {"name": model.name, "version": model.version, "sha256": model.sha256},
        "input_sample": config.input_sample,
        "output_sample": config.output_sample,
        "max_request_bytes": config.max_request_bytes,
        "batching": dict(config.batching) if config.batching is not None else None,
        "auth_enabled": auth_enabled,
        "route": "score",
        "auth_level": auth_level,
    }


def run_labels(*, port: int, auth: str, score_path: str, ready_path: str,
               local_command: tuple[str, ...] | None = None) -> dict[str, str]:
    """Labels that tell ``edgepack run`` how to start and probe the image, whatever its target."""
    labels = {"io.edgepack.port": str(port), "io.edgepack.auth": auth, "io.edgepack.score-path": score_path,
              "io.edgepack.ready-path": ready_path}
    if local_command:
        labels["io.edgepack.local-command"] = json.dumps(list(local_command))
    return labels


def model_labels(model: ModelArtifact, target: str) -> dict[str, str]:
    """OCI labels that carry the model's identity in the image config."""
    return {
        "io.edgepack.model.name": model.name,
        "io.edgepack.model.version": str(model.version),
        "io.edgepack.model.sha256": model.sha256,
        "io.edgepack.target": target,
        "org.opencontainers.image.title": f"{model.name} ({target})",
        "org.opencontainers.image.version": str(model.version),
    }


def common_env(model: ModelArtifact, app_root: str, config: InferenceConfig) -> dict[str, str]:
    """Environment shared by every target; user variables from the config come last and win."""
    mdir = model_dir(model, app_root)
    return {
        "PYTHONPATH": f"{RUNTIME_LIB}:{SITE_PACKAGES}",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "EDGEPACK_RUNTIME_CONFIG": RUNTIME_CONFIG,
        "AZUREML_MODEL_DIR": mdir,
        "EDGEPACK_MODEL_DIR": mdir,
        **dict(config.environment_variables),
    }
