"""A build's record, gathered from what the build returned: the one place that knows both the builder's
results and the documents' record."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgepack.attest import record as rec
from edgepack.attest.record import BuildRecord, Input, Layer
from edgepack.oci.layer import CODEC, host_family


@dataclasses.dataclass(frozen=True)
class Sources:
    """The inputs of a package run that the build itself does not see: models, config file, target."""

    models: tuple[Any, ...]  # ModelArtifact
    config_path: Path
    source: Path  # the source directory, or the entry script when there is none
    target: Any  # Target
    base_image: str  # as asked (a tag or a digest reference)
    options: dict[str, Any]
    image: str  # the image's name: the destination repository, else "edgepack-image"


def _wheel_digest(pip_hash: str) -> str:
    algorithm, _, hexpart = pip_hash.partition("=")
    return f"{algorithm}:{hexpart}" if hexpart else ""


def build_record(sources: Sources, result: Any, plan: Any, *, version: str) -> BuildRecord:
    """The record of one platform's image: ``result`` is the builder's BuildResult, ``plan`` its ImagePlan."""
    image = result.image
    manifest = json.loads(image.manifest)
    base_count = len(manifest["layers"]) - len(image.new_layers)
    layers = [Layer("base", d.digest, d.size) for d in image.layers[:base_count]]
    layers += [Layer(spec.name, d.digest, d.size) for spec, d in zip(plan.layers, image.new_layers)]
    packages = []
    for resolved in result.resolved:
        for pin, pip_hash in zip(resolved.pins, resolved.hashes):
            name, _, version_ = pin.partition("==")
            packages.append((name, version_, _wheel_digest(pip_hash)))
    inputs = [Input(rec.BASE_IMAGE, str(result.base.ref), result.base.ref.digest or "")]
    inputs += [Input(rec.MODEL, f"model:{m.name}:{m.version}", rec.model_digest(m.sha256),
                     name=f"model {m.name}:{m.version}") for m in sources.models]
    inputs.append(Input(rec.INFERENCE_CONFIG, str(sources.config_path.resolve()),
                        rec.file_digest(sources.config_path)))
    inputs.append(Input(rec.SOURCE_DIRECTORY, str(sources.source.resolve()), rec.source_digest(sources.source)))
    inputs.append(Input(rec.DEPENDENCY_LOCK, "edgepack:resolved-dependencies",
                        rec.lock_digest([(r.pins, r.hashes) for r in result.resolved])))
    mtime = int(sources.options.get("mtime") or 0)
    return BuildRecord(
        image=sources.image, digest=image.manifest_digest, media_type=manifest["mediaType"],
        size=len(image.manifest), platform=plan.platform, target=sources.target.name,
        parameters={"target": dataclasses.asdict(sources.target), "platform": plan.platform,
                    "baseImage": sources.base_image, "models": [f"{m.name}:{m.version}" for m in sources.models],
                    "inferenceConfig": str(sources.config_path.resolve()), "options": sources.options},
        inputs=tuple(inputs), layers=tuple(layers), python_packages=tuple(sorted(packages)),
        debian_packages=result.debian_packages,
        models=tuple((m.name, m.version, rec.model_digest(m.sha256)) for m in sources.models),
        builder_version=version,
        created=datetime.fromtimestamp(mtime, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        internal={"layerCompression": CODEC, "buildHostFamily": host_family()})
