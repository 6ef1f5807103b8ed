"""Models stored in an OCI registry: the manifest's shape, one definition for the library that pushes and pulls
them and for the on-device agent that fetches them by digest.

An OCI 1.1 image manifest with ``artifactType`` ``application/vnd.edgepack.model.v1+json``, the empty config,
one layer per model file (the file's bytes as they are, titled by its relative path, the ORAS convention) and
annotations for the model's name, version, content sha256, format, folder and input/output specs. Pure values:
no I/O here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

ARTIFACT_TYPE = "application/vnd.edgepack.model.v1+json"
FILE_MEDIA_TYPE = "application/vnd.edgepack.model.file.v1"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"
TITLE = "org.opencontainers.image.title"
_KEY = "io.edgepack.model."
_HEX64 = re.compile(r"[0-9a-f]{64}")


class ArtifactError(ValueError):
    """The manifest is not an edgepack model, or is malformed."""


def digest_of(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def model_content_sha256(files: list[tuple[str, str]]) -> str:
    """A model's content digest from ``(relative path, file sha256 hex)`` pairs: sha256 over the sorted listing,
    the same on every machine (the model store's ``sha256``)."""
    listing = "".join(f"{path}\0{sha}\n" for path, sha in sorted(files))
    return hashlib.sha256(listing.encode()).hexdigest()


def safe_relative_path(path: str) -> bool:
    """True for a relative path of plain names (no ``..``, no absolute or empty parts, no backslashes)."""
    parts = path.split("/")
    return bool(path) and "\\" not in path and "\0" not in path and all(p not in ("", ".", "..") for p in parts)


@dataclass(frozen=True)
class ArtifactFile:
    """One file of the model: relative path, blob digest (``sha256:...``) and size."""

    path: str
    digest: str
    size: int


@dataclass(frozen=True)
class ModelManifest:
    """What a model artifact's manifest says."""

    name: str
    version: int
    sha256: str
    files: tuple[ArtifactFile, ...]
    format: str = "files"
    folder: str = ""
    inputs: tuple[dict[str, Any], ...] = ()
    outputs: tuple[dict[str, Any], ...] = ()
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Bytes of all files."""
        return sum(f.size for f in self.files)

    def to_bytes(self) -> bytes:
        """The manifest JSON, canonical (sorted keys, no spaces), so the same model gives the same digest."""
        annotations = {**self.extra, f"{_KEY}name": self.name, f"{_KEY}version": str(self.version),
                       f"{_KEY}sha256": self.sha256, f"{_KEY}format": self.format,
                       f"{_KEY}inputs": json.dumps(list(self.inputs), separators=(",", ":"), sort_keys=True),
                       f"{_KEY}outputs": json.dumps(list(self.outputs), separators=(",", ":"), sort_keys=True)}
        if self.folder:
            annotations[f"{_KEY}folder"] = self.folder
        manifest = {
            "schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE, "artifactType": ARTIFACT_TYPE,
            "config": {"mediaType": EMPTY_MEDIA_TYPE, "digest": digest_of(EMPTY_CONFIG), "size": len(EMPTY_CONFIG),
                       "data": base64.b64encode(EMPTY_CONFIG).decode()},
            "layers": [{"mediaType": FILE_MEDIA_TYPE, "digest": f.digest, "size": f.size,
                        "annotations": {TITLE: f.path}} for f in sorted(self.files, key=lambda f: f.path)],
            "annotations": annotations,
        }
        return json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def parse(cls, body: bytes) -> "ModelManifest":
        """Read a manifest, checking that it is an edgepack model and that every path and digest is sound.

        Raises:
            ArtifactError: another kind of artifact or image, or a malformed field (named in the message).
        """
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise ArtifactError(f"the manifest is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ArtifactError("the manifest is not a JSON object")
        kind = data.get("artifactType") or (data.get("config") or {}).get("mediaType")
        if kind != ARTIFACT_TYPE:
            raise ArtifactError(f"it is not an edgepack model (artifact type {kind or 'none'!r}, "
                                f"expected {ARTIFACT_TYPE!r})")
        notes = data.get("annotations") or {}
        try:
            name, version, sha = notes[f"{_KEY}name"], int(notes[f"{_KEY}version"]), notes[f"{_KEY}sha256"]
            inputs = tuple(json.loads(notes.get(f"{_KEY}inputs", "[]")))
            outputs = tuple(json.loads(notes.get(f"{_KEY}outputs", "[]")))
        except (KeyError, ValueError, TypeError) as exc:
            raise ArtifactError(f"its annotations lack or garble {exc}") from None
        if not isinstance(sha, str) or not _HEX64.fullmatch(sha):
            raise ArtifactError(f"its model sha256 {sha!r} is not 64 hex digits")
        files = []
        for layer in data.get("layers") or []:
            path = (layer.get("annotations") or {}).get(TITLE, "")
            digest, size = layer.get("digest", ""), layer.get("size")
            if not safe_relative_path(path):
                raise ArtifactError(f"a file is named {path!r}, which is not a plain relative path")
            if not (isinstance(digest, str) and digest.startswith("sha256:") and _HEX64.fullmatch(digest[7:])):
                raise ArtifactError(f"file '{path}' has the digest {digest!r}, which is not sha256")
            if not isinstance(size, int) or size < 0:
                raise ArtifactError(f"file '{path}' has the size {size!r}")
            files.append(ArtifactFile(path, digest, size))
        if not files:
            raise ArtifactError("it holds no files")
        if len({f.path for f in files}) != len(files):
            raise ArtifactError("two files have the same path")
        if model_content_sha256([(f.path, f.digest[7:]) for f in files]) != sha:
            raise ArtifactError("its files do not add up to the model sha256 it names")
        known = {f"{_KEY}{k}" for k in ("name", "version", "sha256", "format", "folder", "inputs", "outputs")}
        return cls(name=name, version=version, sha256=sha, files=tuple(files),
                   format=notes.get(f"{_KEY}format", "files"), folder=notes.get(f"{_KEY}folder", ""),
                   inputs=inputs, outputs=outputs, extra={k: v for k, v in notes.items() if k not in known})
