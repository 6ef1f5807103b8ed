"""The handover between build and image: RuntimeConfig (runtime.json) and ModelEntry (one per deployed model).

The packagers build these values and write them with ``to_json``; the image reads them with ``from_file``. The
runtime settings live in ``runtime.json``; each model's entry lives in ``models/<name>-<version>.json`` beside
it, in that model's own layer, so a new version of one model changes exactly one layer.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

MODELS_FOLDER = "models"  # beside runtime.json: one ModelEntry per model
# An IoT Edge module's endpoints when none are named (the names IoT Edge's samples and templates use).
DEFAULT_MODULE_INPUT, DEFAULT_MODULE_OUTPUT = "input1", "output1"


class RuntimeSetupError(Exception):
    """The runtime cannot start: bad runtime config, missing keys, or an entry script that fails to load."""


@dataclass(frozen=True)
class ModelEntry:
    """A deployed model: where its files are (Azure ML's ``azureml-models/NAME/VERSION``) and what it is."""

    name: str
    version: int
    sha256: str
    dir: str

    def to_json(self) -> bytes:
        """The entry file's bytes."""
        return (json.dumps(asdict(self), indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def file_name(cls, name: str, version: int) -> str:
        """The entry's file name in the models folder."""
        return f"{name}-{version}.json"


@dataclass(frozen=True)
class AcceleratorSettings:
    """An FPGA image's two artifacts and how to reach its accelerator (``fpga.runtime`` reads it at start).

    ``model`` is the quantized model for the accelerator and ``cpu_model`` the fallback, each ``{"name",
    "version"}`` of an entry in ``RuntimeConfig.models``; both hold their ONNX files under the same names, so the
    entry script opens either unchanged. ``provider_options`` go to ``provider`` as onnxruntime's provider options.
    """

    profile: str
    provider: str
    model: dict[str, Any]
    cpu_model: dict[str, Any]
    config_file: str
    provider_options: dict[str, str]
    report: str

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AcceleratorSettings":
        """Parse runtime.json's ``accelerator`` value.

        Raises:
            RuntimeSetupError: a key is missing or unknown.
        """
        names = {f.name for f in fields(cls)}
        unknown, missing = sorted(set(data) - names), sorted(names - set(data))
        if unknown or missing:
            raise RuntimeSetupError(f"runtime config 'accelerator': unknown keys {unknown}, missing keys {missing}")
        return cls(**data)


@dataclass(frozen=True)
class RuntimeConfig:
    """The runtime's settings, baked into the image at build time."""

    entry_script: str
    source_dir: str
    # AZUREML_MODEL_DIR: the one model's folder, or the azureml-models folder holding several (or none).
    model_dir: str = ""
    # The model /health reports (the only one, or None with several).
    model: dict[str, Any] | None = None
    target: str = "webservice"
    input_sample: Any = None
    output_sample: Any = None
    max_request_bytes: int = 10 << 20
    auth_enabled: bool = False
    route: str = "score"
    auth_level: str = "anonymous"
    # Micro-batching of binary tensor requests: {"max_batch_size": int, "max_wait_ms": float}.
    batching: dict[str, Any] | None = None
    # Azure ML's AML_APP_ROOT: the folder holding azureml-models/ (where Model.get_model_path looks).
    app_root: str = ""
    # IoT Edge modules: the module input the agent scores and the output its results go to.
    module_input: str = DEFAULT_MODULE_INPUT
    module_output: str = DEFAULT_MODULE_OUTPUT
    # FPGA images: the accelerator's artifact, the CPU fallback and the provider's settings.
    accelerator: AcceleratorSettings | None = None
    # Every deployed model (read from the models folder; not written into runtime.json).
    models: tuple[ModelEntry, ...] = field(default=())

    def to_json(self) -> bytes:
        """runtime.json's bytes (the models are written as their own entries)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in ("models", "model", "model_dir", "accelerator")}
        if self.accelerator is not None:  # only FPGA images carry it: the others' runtime.json is unchanged
            data["accelerator"] = asdict(self.accelerator)
        return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()

    def entry(self, ref: dict[str, Any]) -> ModelEntry:
        """The deployed model ``ref`` (``{"name", "version"}``) names.

        Raises:
            RuntimeSetupError: no such model in this image.
        """
        for entry in self.models:
            if entry.name == ref.get("name") and entry.version == ref.get("version"):
                return entry
        raise RuntimeSetupError(f"runtime config: no model {ref.get('name')}:{ref.get('version')} in this image")

    def with_models(self, models: tuple[ModelEntry, ...]) -> "RuntimeConfig":
        """This config serving ``models``: AZUREML_MODEL_DIR is the one model's folder, else azureml-models."""
        only = models[0] if len(models) == 1 else None
        return replace(self, models=models,
                       model_dir=only.dir if only else os.path.join(self.app_root, "azureml-models"),
                       model={"name": only.name, "version": only.version, "sha256": only.sha256} if only else None)

    @classmethod
    def from_file(cls, path: str | None = None) -> "RuntimeConfig":
        """Read ``path`` (default ``$EDGEPACK_RUNTIME_CONFIG``) and the model entries beside it.

        Raises:
            RuntimeSetupError: the file is missing, not JSON, or lacks a required field.
        """
        path = path or os.environ.get("EDGEPACK_RUNTIME_CONFIG")
        if not path:
            raise RuntimeSetupError("no runtime config: set EDGEPACK_RUNTIME_CONFIG to the runtime.json path")
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "models"}
            if isinstance(known.get("accelerator"), dict):
                known["accelerator"] = AcceleratorSettings.from_dict(known["accelerator"])
            config = cls(**known)
            if "model_dir" in known:
                return config  # a config naming its model folder itself (profiling, tests)
            folder = os.path.join(os.path.dirname(path), MODELS_FOLDER)
            entries = []
            for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    entries.append(ModelEntry(**json.load(f)))
            return config.with_models(tuple(entries))
        except (OSError, ValueError, TypeError) as exc:
            raise RuntimeSetupError(f"reading runtime config '{path}': {exc}") from exc
