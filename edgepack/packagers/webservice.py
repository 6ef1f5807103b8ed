"""The webservice packager: a scoring server on port 5001 with Azure ML's /score contract. Pure."""

from __future__ import annotations

from edgepack.config.schema import InferenceConfig
from edgepack.models.artifact import ModelArtifact
from edgepack.oci.plan import ImagePlan, PipLayer
from edgepack.packagers import layers
from edgepack.targets import WebServiceTarget

DEFAULT_BASE = "docker.io/library/python:3.11-slim-bookworm"
APP_ROOT = "/app"
SOURCE_DEST = "/app/src"


def plan(model: ModelArtifact, config: InferenceConfig, target: WebServiceTarget, *,
         base_image: str | None = None) -> ImagePlan:
    """Plan a webservice image: deps, runtime, source, model; ``python3 -m edgepack.runtime`` as the command."""
    rc = layers.runtime_config(model, config, target=target.name, app_root=APP_ROOT, source_dest=SOURCE_DEST,
                               auth_enabled=target.auth)
    env = {**layers.common_env(model, APP_ROOT, config), "EDGEPACK_PORT": str(target.port)}
    return ImagePlan(
        target=target.name,
        base_image=base_image or config.base_image or DEFAULT_BASE,
        layers=(
            PipLayer("python-dependencies", layers.requirements(layers.RUNTIME_REQUIREMENTS, config.pip_requirements),
                     layers.SITE_PACKAGES, comment="python dependencies"),
            layers.runtime_layer(with_triggers=False),
            layers.source_layer(config, SOURCE_DEST),
            layers.model_layer(model, app_root=APP_ROOT, runtime_config=rc),
        ),
        env=env,
        entrypoint=("python3", "-m", "edgepack.runtime"),
        cmd=None,
        workdir=SOURCE_DEST,
        labels={**layers.model_labels(model, target.name),
                **layers.run_labels(port=target.port, auth="key" if target.auth else "none", score_path="/score",
                                    ready_path="/health")},
        exposed_ports=(target.port,),
        local_command=None,
        port=target.port,
    )
