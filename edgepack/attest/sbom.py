"""The image's SBOM: a CycloneDX 1.6 JSON document, written with the CycloneDX Python library.

Components: the Python packages of the dependency layer (the exact versions and wheel hashes edgepack resolved),
the base image's Debian packages (read from its dpkg status), the edgepack runtime and each model. The document
is reproducible: its serial number comes from the image digest and its timestamp from the build's.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from edgepack.attest.record import BuildRecord

def _hash(digest: str) -> Any:
    from cyclonedx.model import HashAlgorithm, HashType

    algorithm, _, hexpart = digest.partition(":")
    alg = {"sha256": HashAlgorithm.SHA_256, "sha512": HashAlgorithm.SHA_512}[algorithm]
    return HashType(alg=alg, content=hexpart)


def sbom(record: BuildRecord) -> bytes:
    """The SBOM of ``record``'s image as CycloneDX JSON bytes."""
    from cyclonedx.model import Property
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.tool import ToolRepository
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    components = []
    for name, version, digest in record.python_packages:
        components.append(Component(
            type=ComponentType.LIBRARY, name=name, version=version, bom_ref=f"pypi:{name}@{version}",
            purl=PackageURL("pypi", name=name.lower().replace("_", "-"), version=version),
            hashes=[_hash(digest)] if digest else [],
            properties=[Property(name="edgepack:layer", value="python-dependencies")]))
    arch = record.platform.partition("/")[2]
    for name, version, architecture in record.debian_packages:
        components.append(Component(
            type=ComponentType.LIBRARY, name=name, version=version, bom_ref=f"deb:{name}@{version}",
            purl=PackageURL("deb", namespace="debian", name=name, version=version,
                            qualifiers={"arch": architecture or arch}),
            properties=[Property(name="edgepack:layer", value="base")]))
    components.append(Component(
        type=ComponentType.FRAMEWORK, name="edgepack-runtime", version=record.builder_version,
        bom_ref="edgepack-runtime", description="edgepack's in-image runtime and target adapter",
        hashes=[_hash(layer.digest) for layer in record.layers if layer.name == "edgepack-runtime"]))
    for model, model_version, digest in record.models:
        components.append(Component(
            type=ComponentType.MACHINE_LEARNING_MODEL, name=model, version=str(model_version),
            bom_ref=f"model:{model}:{model_version}", hashes=[_hash(digest)]))
    image = Component(type=ComponentType.CONTAINER, name=record.image, version=record.digest,
                      bom_ref=record.digest, hashes=[_hash(record.digest)],
                      properties=[Property(name="edgepack:target", value=record.target),
                                  Property(name="edgepack:platform", value=record.platform)])
    tools = ToolRepository(components=[Component(type=ComponentType.APPLICATION, name="edgepack",
                                                 version=record.builder_version)])
    bom = Bom(components=components, serial_number=uuid.UUID(record.digest.partition(":")[2][:32]),
              metadata=BomMetaData(component=image, tools=tools,
                                   timestamp=datetime.fromisoformat(record.created.replace("Z", "+00:00"))))
    bom.register_dependency(image, components)  # the image holds every component
    text = JsonV1Dot6(bom).output_as_string()
    return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":")).encode()


def validate(document: bytes) -> str | None:
    """None when ``document`` is valid CycloneDX 1.6 JSON, else the schema's complaint."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(document.decode())
    return None if error is None else str(error)
