"""InferenceConfig: the entry script, source, environment and samples of a model deployment. Pure values.

``InferenceConfig.from_dict`` walks a plain dict (Azure ML ``inferenceconfig.json`` keys as they are, plus
edgepack's own), collects every problem by field path, and raises them together as one ConfigError.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from edgepack.config import azureml
from edgepack.config.azureml import ModelSource
from edgepack.config.conda import read_conda
from edgepack.config.entry import check_entry_script, defines_function, script_imports
from edgepack.config.files import FileProblem, read_structured
from edgepack.config.requirements import RequirementSet, parse_requirements, requirement_name
from edgepack.errors import ConfigError

DEFAULT_MAX_REQUEST_BYTES = 10 << 20
KEYS = ("entryScript", "sourceDirectory", "runtime", "condaFile", "baseImage", "baseImageRegistry",
        "requirementsFile", "pipRequirements", "environmentVariables", "inputSample", "outputSample",
        "inputSampleFile", "outputSampleFile", "maxRequestBytes", "batching", "description", "environment")
UNSUPPORTED = {
    "extraDockerfileSteps": "edgepack builds without running commands in the image; add files to the source "
                            "directory or packages to pipRequirements instead",
    "enableGpu": "GPU images are not built; the CPU onnxruntime serves the model",
    "cudaVersion": "GPU images are not built",
    "schemaFile": "use inputSample/outputSample (or their ...File variants) instead",
    "dependencies": "use requirementsFile or pipRequirements instead",
}
# Azure ML's inference server and SDK: edgepack's runtime serves the script in their place, and brings the
# azureml.* modules scoring scripts import (see edgepack.runtime.compat). What the server pulled in for the
# script (inference-schema) is added when the script imports it.
SERVER_PACKAGES = ("azureml-defaults", "azureml-inference-server-http", "azureml-core", "azureml-contrib-services",
                   "azureml-model-management-sdk", "azureml-monitoring", "azureml-sdk", "azureml-model-management")
# The azureml.* names edgepack's images provide, by module.
PROVIDED_AZUREML = {
    "azureml": set(), "azureml.core": {"Model"}, "azureml.core.model": {"Model"}, "azureml.contrib": set(),
    "azureml.contrib.services": set(), "azureml.contrib.services.aml_request": {"AMLRequest", "rawhttp"},
    "azureml.contrib.services.aml_response": {"AMLResponse"}, "azureml.monitoring": {"ModelDataCollector"},
}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


@dataclass(frozen=True)
class RegistrySettings:
    """Where the base image lives and who logs in; the password stays in an environment variable."""

    address: str
    username: str | None = None
    password_env: str | None = None


@dataclass(frozen=True)
class InferenceConfig:
    """How to serve a model: entry script, source directory, Python requirements, base image, samples."""

    entry_script: Path
    source_directory: Path | None = None
    runtime: str = "python"
    pip_requirements: tuple[str, ...] = ()
    conda_file: Path | None = None
    base_image: str | None = None
    base_image_registry: RegistrySettings | None = None
    environment_variables: Mapping[str, str] = field(default_factory=dict)
    input_sample: Any = None
    output_sample: Any = None
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    # Micro-batching of binary tensor requests for scripts with run_batch(): max_batch_size rows, max_wait_ms.
    batching: Mapping[str, float] | None = None
    source: Path | None = None
    # Extra package indexes and find-links URLs (never the public index: the configured one serves it).
    index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    # The conda file's python= pin (major.minor), which chooses the default base image's Python.
    python_version: str | None = None
    # Names of requirements that came from conda channels (for the resolver's messages).
    conda_packages: tuple[str, ...] = ()
    # Azure ML server packages left out because edgepack's runtime replaces them.
    replaced: tuple[str, ...] = ()
    # Models a v2 deployment names (used when no --model is given).
    models: tuple[ModelSource, ...] = ()
    # What was accepted but has no effect here, for the user to read.
    notes: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: Any, *, base_dir: Path, source: str) -> "InferenceConfig":
        """Validate ``data`` and build the config; relative paths are taken from ``base_dir``.

        Raises:
            ConfigError: every problem found, each prefixed with its field path.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: the config must be a mapping of keys to values",
                              source=source, hint="Start from samples/digits/inferenceconfig.json.")
        walker = _Walker.for_data(data, base_dir)
        config = walker.build(source)
        if walker.problems:
            raise ConfigError(f"{source}: invalid inference config", source=source, problems=tuple(walker.problems),
                              hint="Fix the fields listed above; keys follow Azure ML's inferenceconfig.json.")
        return config


class _Walker:
    """Collects problems while reading each field."""

    def __init__(self, data: dict[str, Any], base_dir: Path) -> None:
        self.data = data
        self.base = base_dir
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.models: list[ModelSource] = []

    @classmethod
    def for_data(cls, data: dict[str, Any], base_dir: Path) -> "_Walker":
        """A walker over the v1 keys, flattening a v2 deployment or an ``environment`` block first."""
        if azureml.is_v2_deployment(data):
            flat = azureml.deployment_v2(data, base_dir)
            walker = cls(flat.data, base_dir)
            walker.problems, walker.notes, walker.models = flat.problems, flat.notes, flat.models
            return walker
        walker = cls({_camel(k) if isinstance(k, str) else k: v for k, v in data.items()}, base_dir)
        if "environment" in walker.data:
            flat = azureml.environment_block(walker.data.pop("environment"))
            walker.problems += flat.problems
            walker.notes += flat.notes
            for key, value in flat.data.items():
                if key in walker.data and walker.data[key] != value:
                    walker.problems.append(f"environment: sets {key}, which the config also sets")
                walker.data[key] = value
        return walker

    def _str(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, str):
            self.problems.append(f"{key}: must be a string, got {type(value).__name__}")
            return None
        return value

    def _path(self, key: str, base: Path, *, is_dir: bool = False) -> Path | None:
        value = self._str(key)
        if value is None:
            return None
        path = (base / value).resolve()
        if not (path.is_dir() if is_dir else path.is_file()):
            self.problems.append(f"{key}: '{value}' does not exist{' or is not a directory' if is_dir else ''} "
                                 f"(relative to {base})")
            return None
        return path

    def _keys(self) -> None:
        for key in self.data:
            if key in UNSUPPORTED and azureml._empty(self.data[key]):
                self.notes.append(f"{key}: {self.data[key]!r} accepted (edgepack has no such feature: "
                                  f"{UNSUPPORTED[key]})")
            elif key in UNSUPPORTED:
                self.problems.append(f"{key}: not supported: {UNSUPPORTED[key]}")
            elif key.startswith("_"):
                continue
            elif key not in KEYS:
                close = difflib.get_close_matches(str(key), KEYS, n=1)
                self.problems.append(f"{key}: unknown key" + (f" (did you mean '{close[0]}'?)" if close else ""))

    def build(self, source: str) -> InferenceConfig:
        self._keys()
        src_dir = self._path("sourceDirectory", self.base, is_dir=True)
        entry = self._entry(src_dir)
        runtime = self._str("runtime") or "python"
        if runtime.lower() != "python":
            self.problems.append(f"runtime: '{runtime}' is not supported (only 'python')")
        conda = self._path("condaFile", self.base)
        reqs, python, conda_names = self._requirements(conda)
        packages, replaced = self._server_packages(reqs.requirements, entry)
        return InferenceConfig(
            entry_script=entry or self.base / "<missing>", source_directory=src_dir, runtime="python",
            pip_requirements=packages, conda_file=conda, base_image=self._str("baseImage"),
            base_image_registry=self._registry(), environment_variables=self._env(),
            input_sample=self._sample("inputSample"), output_sample=self._sample("outputSample"),
            max_request_bytes=self._max_bytes(), batching=self._batching(entry), source=Path(source),
            index_urls=reqs.index_urls, find_links=reqs.find_links, python_version=python,
            conda_packages=conda_names, replaced=replaced, models=tuple(self.models), notes=tuple(self.notes))

    def _server_packages(self, reqs: tuple[str, ...], entry: Path | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Leave out Azure ML's server packages (the runtime replaces them); add what the script needs of theirs."""
        kept = tuple(r for r in reqs if requirement_name(r) not in SERVER_PACKAGES)
        replaced = tuple(requirement_name(r) for r in reqs if requirement_name(r) in SERVER_PACKAGES)
        if replaced:
            self.notes.append(f"{', '.join(replaced)}: not installed: edgepack's runtime serves the script in place "
                              "of Azure ML's inference server and provides the azureml modules scoring scripts use")
        if entry is None:
            return kept, replaced
        imports = script_imports(entry)
        names = {requirement_name(r) for r in kept}
        extra = []
        if any(m.split(".")[0] == "inference_schema" for m in imports) and "inference-schema" not in names:
            extra.append("inference-schema")  # azureml-defaults brought it in Azure
        if any(m.startswith("azureml.contrib.services") for m in imports) and "werkzeug" not in names:
            extra.append("werkzeug")  # AMLRequest is a werkzeug request, as in Azure ML's server
        for module, names_used in imports.items():
            if not module.startswith("azureml"):
                continue
            provided = PROVIDED_AZUREML.get(module)
            missing = sorted(names_used - provided) if provided is not None else sorted(names_used) or [module]
            if provided is None or missing:
                what = ", ".join(f"{module}.{n}" for n in missing) if provided is not None else module
                self.problems.append(
                    f"entryScript: '{entry.name}' imports {what}, which images do not provide (edgepack provides "
                    "azureml.core.model.Model.get_model_path, azureml.contrib.services' rawhttp, AMLRequest and "
                    "AMLResponse, and azureml.monitoring.ModelDataCollector; the rest of the Azure ML SDK talks to "
                    "a workspace and has no use in a scoring image)")
        return kept + tuple(extra), replaced

    def _entry(self, src_dir: Path | None) -> Path | None:
        if "entryScript" not in self.data:
            self.problems.append("entryScript: required (the score.py that defines init() and run())")
            return None
        entry = self._path("entryScript", src_dir or self.base)
        if entry is None:
            return None
        if src_dir is not None and not entry.is_relative_to(src_dir):
            self.problems.append(f"entryScript: '{self.data['entryScript']}' is outside sourceDirectory")
        self.problems.extend(check_entry_script(entry, "entryScript"))
        return entry

    def _requirements(self, conda: Path | None) -> tuple[RequirementSet, str | None, tuple[str, ...]]:
        """Every requirement in order (pipRequirements, requirementsFile, the conda file), the python= pin and
        the names that came from conda channels."""
        reqs = RequirementSet()
        listed = self.data.get("pipRequirements")
        if listed is not None:
            if isinstance(listed, list) and all(isinstance(x, str) for x in listed):
                more, problems = parse_requirements("\n".join(listed), "pipRequirements")
                reqs = reqs.merged(more)
                self.problems += problems
            else:
                self.problems.append("pipRequirements: must be a list of strings")
        req_file = self._path("requirementsFile", self.base)
        if req_file is not None:
            more, problems = parse_requirements(req_file.read_text(), "requirementsFile")
            reqs = reqs.merged(more)
            self.problems += problems
        env: Any = None
        field_name = "condaFile"
        if conda is not None:
            try:
                env = read_structured(conda)
            except FileProblem as exc:
                self.problems.append(f"condaFile: {exc}")
        elif "_condaInline" in self.data:
            env, field_name = self.data["_condaInline"], "environment.python.condaDependencies"
        if env is None:
            return reqs, None, ()
        read = read_conda(env, field_name)
        self.problems += read.problems
        self.notes += read.notes
        return reqs.merged(read.requirements), read.python, read.conda_packages

    def _registry(self) -> RegistrySettings | None:
        value = self.data.get("baseImageRegistry")
        if value is None:
            return None
        if not isinstance(value, dict):
            self.problems.append("baseImageRegistry: must be a mapping with address, username, passwordEnv")
            return None
        if value.get("password"):
            self.problems.append("baseImageRegistry.password: secrets are not kept in config files; name an "
                                 "environment variable in baseImageRegistry.passwordEnv instead")
        for key in value:
            if key not in ("address", "username", "password", "passwordEnv", "password_env"):
                self.problems.append(f"baseImageRegistry.{key}: unknown key")
        address = value.get("address")
        if not address:
            self.problems.append("baseImageRegistry.address: required")
        return RegistrySettings(str(address or ""), value.get("username"),
                                value.get("passwordEnv") or value.get("password_env"))

    def _env(self) -> dict[str, str]:
        value = self.data.get("environmentVariables") or {}
        if not isinstance(value, dict):
            self.problems.append("environmentVariables: must be a mapping of names to strings")
            return {}
        out = {}
        for key, val in value.items():
            if not isinstance(key, str) or not _ENV_NAME.fullmatch(key):
                self.problems.append(f"environmentVariables.{key}: not a valid variable name")
            elif not isinstance(val, (str, int, float, bool)):
                self.problems.append(f"environmentVariables.{key}: must be a string")
            else:
                out[key] = str(val)
        return out

    def _sample(self, key: str) -> Any:
        if key in self.data and f"{key}File" in self.data:
            self.problems.append(f"{key}File: give {key} or {key}File, not both")
        if key in self.data:
            return self.data[key]
        given = self.data.get(f"{key}File")
        if isinstance(given, str) and (self.base / given).is_symlink():
            self.problems.append(f"{key}File: '{given}' is a symbolic link; the sample is copied into the image, "
                                 "so name the file itself")
            return None
        path = self._path(f"{key}File", self.base)
        if path is None:
            return None
        try:
            return read_structured(path)
        except FileProblem as exc:
            self.problems.append(f"{key}File: {exc}")
            return None

    def _max_bytes(self) -> int:
        value = self.data.get("maxRequestBytes", DEFAULT_MAX_REQUEST_BYTES)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            self.problems.append("maxRequestBytes: must be a positive integer")
            return DEFAULT_MAX_REQUEST_BYTES
        return value

    def _batching(self, entry: Path | None) -> dict[str, float] | None:
        value = self.data.get("batching")
        if value is None:
            return None
        if not isinstance(value, dict):
            self.problems.append("batching: must be a mapping with maxBatchSize and maxWaitMs")
            return None
        out: dict[str, float] = {}
        limits = (("maxBatchSize", "max_batch_size", 1, 4096), ("maxWaitMs", "max_wait_ms", 0, 1000))
        for key, name, low, high in limits:
            given = value.get(key)
            if given is None:
                continue
            if isinstance(given, bool) or not isinstance(given, (int, float)) or not low <= given <= high:
                self.problems.append(f"batching.{key}: must be a number from {low} to {high}")
            elif key == "maxBatchSize" and not isinstance(given, int):
                self.problems.append("batching.maxBatchSize: must be a whole number")
            else:
                out[name] = given
        for key in value:
            if key not in ("maxBatchSize", "maxWaitMs"):
                self.problems.append(f"batching.{key}: unknown key (maxBatchSize, maxWaitMs)")
        if entry is not None and not defines_function(entry, "run_batch"):
            self.problems.append(f"batching: '{entry.name}' defines no run_batch(batch) function to take the batches")
        return out
