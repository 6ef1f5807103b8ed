"""Packagers: one pure ``plan`` function per target, turning (model, inference config, target) into an ImagePlan."""

from __future__ import annotations

from edgepack.config.schema import InferenceConfig
from edgepack.errors import PackagingError
from edgepack.models.artifact import ModelArtifact
from edgepack.oci.plan import ImagePlan
from edgepack.packagers import fpga, functions, iotedge, webservice
from edgepack.targets import (FpgaTarget, FunctionsBlobTarget, FunctionsHttpTarget, FunctionsServiceBusTarget,
                              IoTEdgeTarget, Target, WebServiceTarget)

__all__ = ["plan_image"]


def plan_image(models: ModelArtifact | tuple[ModelArtifact, ...], config: InferenceConfig, target: Target, *,
               base_image: str | None = None) -> ImagePlan:
    """Plan the image for ``target`` serving ``models`` (none, one or several); pure apart from reading the
    source files' digests.

    Raises:
        PackagingError: the model, config and target cannot be combined (for example a source file that
            collides with a generated one).
    """
    if isinstance(models, ModelArtifact):
        models = (models,)
    names = [m.name for m in models]
    if len(set(names)) != len(names) and not isinstance(target, FpgaTarget):
        raise PackagingError(f"packaging models {', '.join(m.ref for m in models)}: a model is named twice",
                             hint="Give each model once; Azure ML deploys one version of a model per service.")
    match target:
        case WebServiceTarget():
            return webservice.plan(models, config, target, base_image=base_image)
        case FunctionsHttpTarget() | FunctionsBlobTarget() | FunctionsServiceBusTarget():
            return functions.plan(models, config, target, base_image=base_image)
        case IoTEdgeTarget():
            return iotedge.plan(models, config, target, base_image=base_image)
        case FpgaTarget():
            return fpga.plan(models, config, target, base_image=base_image)
    raise TypeError(f"no packager for {target!r}")
