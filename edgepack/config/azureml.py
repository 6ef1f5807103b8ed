"""Azure ML's other config shapes, read as an inference config. Pure.

- The Azure CLI's inference config may carry an ``environment`` block (Azure ML environment JSON: ``python``
  with conda dependencies, ``docker`` with a base image, ``environmentVariables``).
- Azure ML v2 describes a deployment as a managed online deployment YAML (``model``, ``code_configuration``,
  ``environment`` inline or as its own YAML file, ``environment_variables``), with model and environment YAML
  files beside it.

Both are flattened into the v1 keys ``InferenceConfig`` reads, plus ``models`` for v2, collecting problems (what
cannot be honoured) and notes (what is accepted but has no effect here).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgepack.config.files import FileProblem, read_structured

# Azure ML's own build images: Azure builds a conda environment on them. edgepack resolves the environment with
# pip for the target's own base instead, so naming one of these keeps the target's default base.
AZUREML_BASE_PREFIXES = ("mcr.microsoft.com/azureml/", "viennaglobal.azurecr.io/")
_V2_HOSTING = ("name", "endpoint_name", "description", "tags", "properties", "instance_type", "instance_count",
               "app_insights_enabled", "scale_settings", "request_settings", "liveness_probe", "readiness_probe",
               "egress_public_network_access", "data_collector", "type", "$schema", "resources")


@dataclass(frozen=True)
class ModelSource:
    """A model a v2 deployment names: registered (``azureml:NAME:VERSION``) or a local path with a name."""

    name: str
    version: int | None = None
    path: Path | None = None


@dataclass
class Flattened:
    """The v1 keys read from another shape, with what could not be honoured and what was only noted."""

    data: dict[str, Any]
    problems: list[str]
    notes: list[str]
    models: list[ModelSource]


def is_azureml_base(image: str) -> bool:
    """True for Azure ML's conda build images, which edgepack replaces with the target's default base."""
    return image.startswith(AZUREML_BASE_PREFIXES)


def is_v2_deployment(data: dict[str, Any]) -> bool:
    """A managed online deployment YAML (by its schema URL or its ``code_configuration`` key)."""
    schema = str(data.get("$schema", ""))
    return "OnlineDeployment" in schema or "code_configuration" in data


def _empty(value: Any) -> bool:
    return value in (None, "", False, [], {}) or (isinstance(value, dict) and all(map(_empty, value.values())))


def _base_image(image: Any, field: str, out: Flattened) -> None:
    """An environment's base image as ``baseImage``, unless it is Azure ML's conda build image (noted)."""
    if not image:
        return
    if is_azureml_base(str(image)):
        out.notes.append(f"{field}: '{image}' is Azure ML's conda build image; the target's default base is used "
                         "(pass --base-image to choose another)")
    else:
        out.data["baseImage"] = image


def environment_block(block: Any, field: str = "environment") -> Flattened:
    """The Azure ML environment JSON of an Azure CLI inference config, as v1 keys."""
    out = Flattened({}, [], [], [])
    if not isinstance(block, dict):
        out.problems.append(f"{field}: must be an Azure ML environment (a mapping with python, docker, ...)")
        return out
    python = block.get("python") or {}
    if python.get("userManagedDependencies"):
        out.notes.append(f"{field}.python.userManagedDependencies: the base image is expected to bring the "
                         "script's packages; only edgepack's runtime packages are added")
    conda = python.get("condaDependencies")
    if conda and not python.get("userManagedDependencies"):
        out.data["_condaInline"] = conda
    if python.get("condaDependenciesFile"):
        out.data["condaFile"] = python["condaDependenciesFile"]
    if not _empty(python.get("baseCondaEnvironment")):
        out.problems.append(f"{field}.python.baseCondaEnvironment: not supported (environments are resolved "
                            "with pip)")
    docker = block.get("docker") or {}
    _base_image(docker.get("baseImage"), f"{field}.docker.baseImage", out)
    if docker.get("baseDockerfile"):
        out.problems.append(f"{field}.docker.baseDockerfile: not supported: edgepack builds without running a "
                            "Dockerfile; build that image yourself and name it as docker.baseImage")
    registry = docker.get("baseImageRegistry") or {}
    if registry.get("address"):
        out.data["baseImageRegistry"] = {k: v for k, v in registry.items() if v is not None}
    if block.get("environmentVariables"):
        out.data["environmentVariables"] = block["environmentVariables"]
    for section in ("spark", "databricks", "r"):
        value = block.get(section)
        if _empty(value) or (isinstance(value, dict) and not any(
                value.get(k) for k in ("repositories", "packages", "mavenLibraries",
                                       "pypiLibraries", "rcranLibraries", "jarLibraries", "eggLibraries",
                                       "cranPackages", "gitHubPackages", "customUrlPackages"))):
            continue
        out.problems.append(f"{field}.{section}: not supported: edgepack images run Python scoring scripts only")
    return out


def _inline(value: Any, base: Path, field: str, out: Flattened) -> tuple[Any, Path]:
    """A v2 section given inline, or the contents of the YAML file it names (with that file's folder as the base
    of its relative paths); None (with a problem noted) when the file cannot be read."""
    if not isinstance(value, str):
        return value, base
    path = (base / value).resolve()
    try:
        return read_structured(path), path.parent
    except FileProblem as exc:
        out.problems.append(f"{field}: {exc}")
        return None, base


def _v2_model(value: Any, base: Path, out: Flattened) -> None:
    if value is None:
        return
    if isinstance(value, str) and value.startswith("azureml:"):
        parts = value[len("azureml:"):].replace("@latest", "").split(":")
        if parts[0].startswith("/") or len(parts) > 2:
            out.problems.append(f"model: '{value}' names a model in a workspace; register it here with "
                                "'edgepack model register' and give it as azureml:NAME:VERSION or --model")
            return
        version = int(parts[1]) if len(parts) == 2 and parts[1].isdigit() else None
        out.models.append(ModelSource(parts[0], version))
        return
    value, base = _inline(value, base, "model", out)
    if value is None:
        return
    if not isinstance(value, dict):
        out.problems.append("model: must be azureml:NAME:VERSION, a mapping with path, or a model YAML file")
        return
    if str(value.get("type", "custom_model")) not in ("custom_model", "custom"):
        out.problems.append(f"model.type: '{value['type']}' is not supported: edgepack serves a scoring script "
                            "(code_configuration), so register the model as custom_model")
    if not value.get("path"):
        out.problems.append("model.path: required (the local file or folder of the model)")
        return
    path = (base / str(value["path"])).resolve()
    if not path.exists():
        out.problems.append(f"model.path: '{value['path']}' does not exist (relative to {base})")
        return
    version = value.get("version")
    out.models.append(ModelSource(str(value.get("name") or path.stem), int(str(version)) if str(version).isdigit()
                                  else None, path))


def _v2_environment(value: Any, base: Path, out: Flattened) -> None:
    if value is None:
        out.problems.append("environment: required (an inline environment, or the path of its YAML file)")
        return
    if isinstance(value, str) and value.startswith("azureml:"):
        out.problems.append(f"environment: '{value}' names an environment in a workspace; give it inline "
                            "(image, conda_file) or as the path of its YAML file")
        return
    value, base = _inline(value, base, "environment", out)
    if value is None:
        return
    if not isinstance(value, dict):
        out.problems.append("environment: must be a mapping (image, conda_file) or the path of a YAML file")
        return
    if value.get("build"):
        out.problems.append("environment.build: not supported: edgepack builds without running a Dockerfile; "
                            "give image and conda_file instead")
    if value.get("inference_config"):
        out.problems.append("environment.inference_config: custom serving containers are not supported; "
                            "edgepack serves the scoring script with its own runtime")
    _base_image(value.get("image"), "environment.image", out)
    if value.get("conda_file"):
        conda = value["conda_file"]
        if isinstance(conda, dict):
            out.data["_condaInline"] = conda
        else:
            out.data["condaFile"] = str((base / str(conda)).resolve())


def deployment_v2(data: dict[str, Any], base: Path) -> Flattened:
    """A v2 managed online deployment YAML as v1 keys (paths made absolute) plus the model it names."""
    out = Flattened({}, [], [], [])
    code = data.get("code_configuration")
    if not isinstance(code, dict) or not code.get("scoring_script"):
        out.problems.append("code_configuration.scoring_script: required (edgepack serves a scoring script; "
                            "no-code MLflow deployments are not supported)")
    else:
        out.data["sourceDirectory"] = str((base / str(code.get("code") or ".")).resolve())
        out.data["entryScript"] = str(code["scoring_script"])
        for key in code:
            if key not in ("code", "scoring_script"):
                out.problems.append(f"code_configuration.{key}: unknown key")
    _v2_model(data.get("model"), base, out)
    _v2_environment(data.get("environment"), base, out)
    if data.get("environment_variables"):
        out.data["environmentVariables"] = data["environment_variables"]
    ignored = sorted(k for k in data if k in _V2_HOSTING and not _empty(data[k]) and k not in ("$schema", "name"))
    if ignored:
        out.notes.append(f"{', '.join(ignored)}: Azure hosting settings, not used by the image")
    for key in data:
        if key not in _V2_HOSTING and key not in ("code_configuration", "model", "environment",
                                                   "environment_variables"):
            out.problems.append(f"{key}: unknown key of a managed online deployment")
    return out
