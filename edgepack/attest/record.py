"""The facts of one build that its SBOM and provenance are made from: pure values, filled in by ``api``."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgepack.oci.layer import file_sha256
from edgepack.packagers.layers import source_files

# The names of a build's inputs, as its provenance lists them and ``verify`` reports them.
BASE_IMAGE = "base image"
INFERENCE_CONFIG = "inference config"
SOURCE_DIRECTORY = "source directory"
DEPENDENCY_LOCK = "dependency lock"
MODEL = "model"


@dataclass(frozen=True)
class Input:
    """One input of a build, by digest: what it is (``kind``), where it was read (``uri``) and its name."""

    kind: str
    uri: str
    digest: str
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A SLSA ResourceDescriptor."""
        algorithm, _, hexpart = self.digest.partition(":")
        return {"name": self.name or self.kind, "uri": self.uri, "digest": {algorithm: hexpart},
                "annotations": {"kind": self.kind}}


@dataclass(frozen=True)
class Layer:
    """One layer of the image: edgepack's name for it ("base" for the base image's), digest and size."""

    name: str
    digest: str
    size: int


@dataclass(frozen=True)
class BuildRecord:
    """What one platform's image was made from and what it holds."""

    image: str  # the image's name (repository, or "edgepack-image" for a layout without a tag)
    digest: str  # the image manifest's digest: the subject of both documents
    media_type: str
    size: int
    platform: str
    target: str
    parameters: dict[str, Any]
    inputs: tuple[Input, ...]
    layers: tuple[Layer, ...]
    python_packages: tuple[tuple[str, str, str], ...]  # (name, version, "sha256:<hex>" of the wheel)
    debian_packages: tuple[tuple[str, str, str], ...]  # (name, version, architecture)
    models: tuple[tuple[str, int, str], ...]  # (name, version, "sha256:<hex>")
    builder_version: str
    created: str  # RFC 3339, from the build's fixed timestamp: the documents are reproducible too
    internal: dict[str, Any] = field(default_factory=dict)


def source_digest(path: Path) -> str:
    """The digest of the source an image was built from: of the entry script alone, or of the files of a source
    directory that go into the image (caches left out): sha256 over their sorted (path, sha256, size) listing."""
    if path.is_file():
        return file_digest(path)
    listing = [(p.relative_to(path).as_posix(), file_sha256(p), p.stat().st_size) for p in source_files(path)]
    return "sha256:" + hashlib.sha256(json.dumps(listing, separators=(",", ":")).encode()).hexdigest()


def model_digest(sha256: str) -> str:
    """A model's digest as ``sha256:<hex>`` (the model store keeps the bare hex)."""
    return sha256 if ":" in sha256 else f"sha256:{sha256}"


def file_digest(path: Path) -> str:
    """``sha256:<hex>`` of one file."""
    return "sha256:" + file_sha256(path)


def lock_digest(pins: list[tuple[tuple[str, ...], tuple[str, ...]]]) -> str:
    """The digest of the resolved dependency sets: each set's ``name==version`` pins and wheel hashes."""
    blob = json.dumps([{"pins": list(p), "hashes": list(h)} for p, h in pins], sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()
