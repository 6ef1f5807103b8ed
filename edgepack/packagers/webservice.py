"""The webservice packager: a scoring server on port 5001 with Azure ML's /score contract. Pure."""

from __future__ import annotations

from edgepack.config.schema import InferenceConfig
from edgepack.models.artifact import ModelArtifact
from edgepack.oci.plan import ImagePlan
from edgepack.packagers import layers
from edgepack.targets import WebServiceTarget

DEFAULT_BASE = "docker.io/library/python:3.11-slim-bookworm"
# Pythons with an official slim bookworm image: a conda file's python= pin picks the matching one.
PYTHONS = ("3.8", "3.9", "3.10", "3.11", "3.12", "3.13")


def default_base(python: str | None) -> str:
    """The slim Python image for the pinned Python, where one exists (else the default)."""
    return f"docker.io/library/python:{python}-slim-bookworm" if python in PYTHONS else DEFAULT_BASE
APP_ROOT = "/app"
SOURCE_DEST = "/app/src"


def plan(models: tuple[ModelArtifact, ...], config: InferenceConfig, target: WebServiceTarget, *,
         base_image: str | None = None) -> ImagePlan:
    """Plan a webservice image: deps, runtime, source, models; ``python3 -m edgepack.runtime`` as the command."""
    rc = layers.runtime_config(models, config, target=target.name, app_root=APP_ROOT, source_dest=SOURCE_DEST,
                               auth_enabled=target.auth)
    env = {**layers.common_env(rc, config), "EDGEPACK_PORT": str(target.port)}
    requirements = layers.requirements(layers.RUNTIME_REQUIREMENTS, config.pip_requirements)
    return ImagePlan(
        target=target.name,
        base_image=base_image or config.base_image or default_base(config.python_version),
        layers=layers.app_layers(models, config, rc, requirements=requirements, source_dest=SOURCE_DEST,
                                 app_root=APP_ROOT),
        env=env,
        entrypoint=("python3", "-m", "edgepack.runtime"),
        cmd=None,
        workdir=SOURCE_DEST,
        labels=layers.image_labels(models, target.name, port=target.port, auth="key" if target.auth else "none",
                                   score_path="/score", ready_path="/health"),
        exposed_ports=(target.port,),
        local_command=None,
        port=target.port,
    )
