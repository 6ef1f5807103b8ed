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

from edgepack.config.entry import check_entry_script, defines_function
from edgepack.config.files import FileProblem, read_structured, requirement_lines
from edgepack.errors import ConfigError

DEFAULT_MAX_REQUEST_BYTES = 10 << 20
KEYS = ("entryScript", "sourceDirectory", "runtime", "condaFile", "baseImage", "baseImageRegistry",
        "requirementsFile", "pipRequirements", "environmentVariables", "inputSample", "outputSample",
        "inputSampleFile", "outputSampleFile", "maxRequestBytes", "batching", "description")
UNSUPPORTED = {
    "extraDockerfileSteps": "edgepack builds without running commands in the image; add files to the source "
                            "directory or packages to pipRequirements instead",
    "enableGpu": "GPU images are not built; the CPU onnxruntime serves the model",
    "cudaVersion": "GPU images are not built",
    "schemaFile": "use inputSample/outputSample (or their ...File variants) instead",
    "dependencies": "use requirementsFile or pipRequirements instead",
}
_CONDA_OK = {"python", "pip"}
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

    @classmethod
    def from_dict(cls, data: Any, *, base_dir: Path, source: str) -> "InferenceConfig":
        """Validate ``data`` and build the config; relative paths are taken from ``base_dir``.

        Raises:
            ConfigError: every problem found, each prefixed with its field path.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: the config must be a mapping of keys to values",
                              source=source, hint="Start from samples/digits/inferenceconfig.json.")
        walker = _Walker({_camel(k) if isinstance(k, str) else k: v for k, v in data.items()}, base_dir)
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
            if key in UNSUPPORTED:
                self.problems.append(f"{key}: not supported: {UNSUPPORTED[key]}")
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
        reqs = self._requirements(conda)
        return InferenceConfig(
            entry_script=entry or self.base / "<missing>", source_directory=src_dir, runtime="python",
            pip_requirements=tuple(reqs), conda_file=conda, base_image=self._str("baseImage"),
            base_image_registry=self._registry(), environment_variables=self._env(),
            input_sample=self._sample("inputSample"), output_sample=self._sample("outputSample"),
            max_request_bytes=self._max_bytes(), batching=self._batching(entry), source=Path(source))

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

    def _requirements(self, conda: Path | None) -> list[str]:
        reqs: list[str] = []
        listed = self.data.get("pipRequirements")
        if listed is not None:
            if isinstance(listed, list) and all(isinstance(x, str) for x in listed):
                more, problems = requirement_lines("\n".join(listed), "pipRequirements")
                reqs += more
                self.problems += problems
            else:
                self.problems.append("pipRequirements: must be a list of strings")
        req_file = self._path("requirementsFile", self.base)
        if req_file is not None:
            more, problems = requirement_lines(req_file.read_text(), "requirementsFile")
            reqs += more
            self.problems += problems
        if conda is not None:
            reqs += self._conda_pip(conda)
        return reqs

    def _conda_pip(self, conda: Path) -> list[str]:
        try:
            env = read_structured(conda)
        except FileProblem as exc:
            self.problems.append(f"condaFile: {exc}")
            return []
        if not isinstance(env, dict) or not isinstance(env.get("dependencies") or [], list):
            self.problems.append("condaFile: must be a conda environment (a mapping with a 'dependencies' list)")
            return []
        pip: list[str] = []
        for dep in env.get("dependencies") or []:
            if isinstance(dep, dict) and isinstance(dep.get("pip"), list):
                more, problems = requirement_lines("\n".join(map(str, dep["pip"])), "condaFile: pip")
                pip += more
                self.problems += problems
            elif isinstance(dep, str) and re.split(r"[=<>! ]", dep, maxsplit=1)[0] not in _CONDA_OK:
                self.problems.append(f"condaFile: '{dep}' is a conda-only package; move it under 'pip:' "
                                     "(edgepack installs wheels with pip)")
        return pip

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
            if not isinstance(key, str) or not _ENV_NAME.match(key):
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
