"""The image's provenance: an in-toto Statement v1 whose predicate is SLSA provenance v1.

The build definition lists the inputs by digest (base image, models, inference config, source directory,
dependency lock) and the parameters (target, platform, options); the run details name the builder and list
each layer's digest. Environment values, credentials and index URLs with secrets filled in never appear: only
what the record holds, and the record holds digests, names and paths.
"""

from __future__ import annotations

import json
from typing import Any

from edgepack.attest.record import BuildRecord, Input, Layer

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://edgepack.dev/build/v1"
BUILDER_ID = "https://edgepack.dev/builder/local"


def statement(record: BuildRecord) -> bytes:
    """The provenance statement of ``record``'s image as JSON bytes (canonical: sorted keys, no spaces)."""
    algorithm, _, hexpart = record.digest.partition(":")
    body = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": record.image, "digest": {algorithm: hexpart},
                     "annotations": {"platform": record.platform, "mediaType": record.media_type}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": record.parameters,
                "internalParameters": record.internal,
                "resolvedDependencies": [i.to_dict() for i in record.inputs],
            },
            "runDetails": {
                "builder": {"id": BUILDER_ID, "version": {"edgepack": record.builder_version}},
                "metadata": {"startedOn": record.created, "finishedOn": record.created},
                "byproducts": [{"name": layer.name, "digest": {"sha256": layer.digest.partition(":")[2]},
                                "annotations": {"size": str(layer.size)}} for layer in record.layers],
            },
        },
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def inputs_of(document: dict[str, Any]) -> list[Input]:
    """The inputs a provenance statement records (the inverse of ``Input.to_dict``)."""
    out = []
    for item in document["predicate"]["buildDefinition"]["resolvedDependencies"]:
        (algorithm, hexpart), = item["digest"].items()
        out.append(Input(kind=item.get("annotations", {}).get("kind", item.get("name", "")), uri=item.get("uri", ""),
                         digest=f"{algorithm}:{hexpart}", name=item.get("name", "")))
    return out


def layers_of(document: dict[str, Any]) -> list[Layer]:
    """The layers a provenance statement records, in image order."""
    return [Layer(b["name"], "sha256:" + b["digest"]["sha256"], int(b.get("annotations", {}).get("size", 0)))
            for b in document["predicate"]["runDetails"]["byproducts"]]
