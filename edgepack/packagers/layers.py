"""Layer specs shared by every target: the in-image runtime, the user's source directory and the model files.

Reads files' contents to hash them (the only side effect); everything returned is a pure value.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path, PurePosixPath

import edgepack
from edgepack.config.schema import InferenceConfig
from edgepack.errors import PackagingError
from edgepack.models.artifact import ModelArtifact
from edgepack.oci.layer import FileEntry, LayerSpec
from edgepack.oci.plan import PipLayer
from edgepack.runtime.labels import ImageLabels
from edgepack.runtime.settings import (DEFAULT_MODULE_INPUT, DEFAULT_MODULE_OUTPUT, MODELS_FOLDER, ModelEntry,
                                       RuntimeConfig)

RUNTIME_LIB = "/opt/edgepack/lib"
SITE_PACKAGES = "/opt/edgepack/site-packages"
RUNTIME_CONFIG = "/opt/edgepack/runtime.json"
MODEL_ENTRIES = f"/opt/edgepack/{MODELS_FOLDER}"
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


def runtime_layer(*, with_triggers: bool = False, with_agent: bool = False, with_fpga: bool = False,
                  extra: tuple[FileEntry, ...] = ()) -> LayerSpec:
    """The edgepack runtime and the target's adapter (the trigger adapters for function images, the device agent
    for IoT Edge modules, the execution-provider selection for FPGA images), read as files, not imported."""
    pkg = Path(edgepack.__file__).parent
    entries = [FileEntry.from_file(f"{RUNTIME_LIB}/edgepack/__init__.py", pkg / "__init__.py")]
    entries += _python_files(pkg / "runtime", f"{RUNTIME_LIB}/edgepack/runtime")
    if with_triggers:
        triggers = Path(str(resources.files("triggers")))
        entries += _python_files(triggers, f"{RUNTIME_LIB}/triggers")
    if with_agent:
        agent = Path(str(resources.files("device_agents")))
        entries += _python_files(agent, f"{RUNTIME_LIB}/device_agents")
    if with_fpga:
        fpga = Path(str(resources.files("fpga")))
        entries.append(FileEntry.from_file(f"{RUNTIME_LIB}/fpga/__init__.py", fpga / "__init__.py"))
        entries += _python_files(fpga / "runtime", f"{RUNTIME_LIB}/fpga/runtime")
    return LayerSpec("edgepack-runtime", tuple(entries) + extra, comment="edgepack runtime and target adapter")


def source_files(root: Path) -> list[Path]:
    """The files of a source directory that go into the image: regular files, no links, no caches."""
    return [p for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink() and not _SKIP_DIRS.intersection(p.relative_to(root).parts)
            and not p.name.endswith(_SKIP_SUFFIXES)]


def source_layer(config: InferenceConfig, dest: str, *, settings: RuntimeConfig,
                 reserved: tuple[str, ...] = ()) -> LayerSpec:
    """The user's source directory (or only the entry script when none is given), placed at ``dest``, with the
    runtime settings that name it (``runtime.json``: they change when the source or the config does).

    Raises:
        PackagingError: a source file would replace a file the target generates (for example function_app.py).
    """
    root = config.source_directory or config.entry_script.parent
    files = [config.entry_script] if config.source_directory is None else source_files(root)
    entries = []
    for path in files:
        rel = path.relative_to(root).as_posix()
        if rel in reserved:
            raise PackagingError(
                f"packaging source directory '{root}': '{rel}' would replace the file this target generates",
                hint=f"Rename or remove '{rel}' from the source directory.")
        entries.append(FileEntry.from_file(str(PurePosixPath(dest) / rel), path))
    entries.append(FileEntry.from_bytes(RUNTIME_CONFIG, settings.to_json()))
    return LayerSpec("source", tuple(entries), comment=f"source directory {root.name}")


def model_dir(model: ModelArtifact, app_root: str) -> str:
    """Where the model's files go in the image: Azure ML's ``azureml-models/<name>/<version>`` layout."""
    return f"{app_root}/azureml-models/{model.name}/{model.version}"


def model_entry(model: ModelArtifact, app_root: str) -> ModelEntry:
    """The model as the runtime sees it."""
    return ModelEntry(model.name, model.version, model.sha256, model_dir(model, app_root))


def model_layers(models: tuple[ModelArtifact, ...], *, app_root: str) -> tuple[LayerSpec, ...]:
    """One layer per model: its files (under the registered folder's name, as Azure ML lays them out) and its
    runtime entry. A new version of one model changes that layer only."""
    out = []
    names = [m.name for m in models]
    for model in models:
        dest = model_dir(model, app_root) + (f"/{model.folder}" if model.folder else "")
        entries = [FileEntry.from_file(f"{dest}/{f.path}", model.root / f.path, sha256=f.sha256)
                   for f in model.files]
        entry = model_entry(model, app_root)
        entries.append(FileEntry.from_bytes(f"{MODEL_ENTRIES}/{ModelEntry.file_name(model.name, model.version)}",
                                            entry.to_json()))
        name = "model" if len(models) == 1 else (
            f"model-{model.name}" if names.count(model.name) == 1 else f"model-{model.name}-{model.version}")
        out.append(LayerSpec(name, tuple(entries),
                             comment=f"model {model.ref} {model.sha256[:12]}"))
    return tuple(out)


def runtime_config(models: tuple[ModelArtifact, ...], config: InferenceConfig, *, target: str, app_root: str,
                   source_dest: str, auth_enabled: bool, auth_level: str = "anonymous",
                   module_input: str = DEFAULT_MODULE_INPUT,
                   module_output: str = DEFAULT_MODULE_OUTPUT) -> RuntimeConfig:
    """The settings the in-image runtime reads from ``EDGEPACK_RUNTIME_CONFIG`` (and the model entries)."""
    src_root = config.source_directory or config.entry_script.parent
    return RuntimeConfig(
        target=target,
        entry_script=str(PurePosixPath(source_dest) / config.entry_script.relative_to(src_root).as_posix()),
        source_dir=source_dest,
        app_root=app_root,
        input_sample=config.input_sample,
        output_sample=config.output_sample,
        max_request_bytes=config.max_request_bytes,
        batching=dict(config.batching) if config.batching is not None else None,
        auth_enabled=auth_enabled,
        route="score",
        auth_level=auth_level,
        module_input=module_input,
        module_output=module_output,
    ).with_models(tuple(model_entry(m, app_root) for m in models))


def image_labels(models: tuple[ModelArtifact, ...], target: str, *, port: int, auth: str, score_path: str,
                 ready_path: str, local_command: tuple[str, ...] | None = None, module_input: str | None = None,
                 module_output: str | None = None, accelerator: dict[str, str] | None = None) -> dict[str, str]:
    """The image's ``io.edgepack.*`` labels: how ``edgepack run`` starts and probes it, and what it holds."""
    return ImageLabels(target=target, port=port, auth=auth, score_path=score_path, ready_path=ready_path,
                       local_command=local_command, module_input=module_input, module_output=module_output,
                       accelerator=accelerator, models=tuple({"name": m.name, "version": m.version, "sha256": m.sha256}
                                    for m in models)).to_labels()


def common_env(settings: RuntimeConfig, config: InferenceConfig) -> dict[str, str]:
    """Environment shared by every target, as Azure ML sets it; user variables from the config come last and win."""
    return {
        "PYTHONPATH": f"{RUNTIME_LIB}:{SITE_PACKAGES}",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "EDGEPACK_RUNTIME_CONFIG": RUNTIME_CONFIG,
        "AML_APP_ROOT": settings.app_root,
        "AZUREML_ENTRY_SCRIPT": settings.entry_script,
        "AZUREML_MODEL_DIR": settings.model_dir,
        "EDGEPACK_MODEL_DIR": settings.model_dir,
        **dict(config.environment_variables),
    }


def app_layers(models: tuple[ModelArtifact, ...], config: InferenceConfig, settings: RuntimeConfig, *,
               requirements: tuple[str, ...], source_dest: str, app_root: str,
               with_agent: bool = False, with_fpga: bool = False) -> tuple[LayerSpec | PipLayer, ...]:
    """The layers of an ``/app`` image in DESIGN.md's order: dependencies, runtime (and agent), source, models."""
    return (
        PipLayer("python-dependencies", requirements, SITE_PACKAGES, comment="python dependencies",
                 index_urls=config.index_urls, find_links=config.find_links, conda_packages=config.conda_packages),
        runtime_layer(with_agent=with_agent, with_fpga=with_fpga),
        source_layer(config, source_dest, settings=settings),
        *model_layers(models, app_root=app_root),
    )
