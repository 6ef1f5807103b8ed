"""Packagers: one pure ``plan`` function per target, turning (model, inference config, target) into an ImagePlan."""

from __future__ import annotations

from edgepack.config.schema import InferenceConfig
from edgepack.models.artifact import ModelArtifact
from edgepack.oci.plan import ImagePlan
from edgepack.packagers import functions, webservice
from edgepack.targets import (FunctionsBlobTarget, FunctionsHttpTarget, FunctionsServiceBusTarget, Target,
                              WebServiceTarget)

__all__ = ["plan_image"]


def plan_image(model: ModelArtifact, config: InferenceConfig, target: Target, *,
               base_image: str | None = None) -> ImagePlan:
    """Plan the image for ``target``; pure apart from reading the source files' digests.

    Raises:
        PackagingError: the model, config and target cannot be combined (for example a source file that
            collides with a generated one).
    """
    match target:
        case WebServiceTarget():
            return webservice.plan(model, config, target, base_image=base_image)
        case FunctionsHttpTarget() | FunctionsBlobTarget() | FunctionsServiceBusTarget():
            return functions.plan(model, config, target, base_image=base_image)
    raise TypeError(f"no packager for {target!r}")
