"""OCI 1.1 referrers as pure values: artifact manifests whose ``subject`` is an image, and the tag-schema fallback
index (``sha256-<hex>``) that registries without the referrers API keep them in. No I/O."""

from __future__ import annotations

import json

from edgepack.oci.descriptor import OCI_INDEX, OCI_MANIFEST, Descriptor, sha256_digest

EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY = b"{}"
EMPTY_DESCRIPTOR = Descriptor(EMPTY_MEDIA_TYPE, sha256_digest(EMPTY), len(EMPTY))
SBOM_TYPE = "application/vnd.cyclonedx+json"
PROVENANCE_TYPE = "application/vnd.in-toto+json"


def _canonical(data: dict) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def artifact_manifest(subject: Descriptor, artifact_type: str, document: bytes) -> bytes:
    """The manifest of one document (an SBOM, a provenance statement) attached to ``subject``."""
    return _canonical({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": EMPTY_DESCRIPTOR.to_dict(),
        "layers": [Descriptor(artifact_type, sha256_digest(document), len(document)).to_dict()],
        "subject": Descriptor(subject.media_type, subject.digest, subject.size).to_dict(),
    })


def descriptor_of(manifest: bytes) -> Descriptor:
    """How an index lists an artifact manifest: with its artifact type."""
    return Descriptor(OCI_MANIFEST, sha256_digest(manifest), len(manifest),
                      artifact_type=json.loads(manifest).get("artifactType"))


def fallback_tag(subject_digest: str) -> str:
    """The tag that holds the referrers index of ``subject_digest`` where the registry has no referrers API."""
    algorithm, _, hexpart = subject_digest.partition(":")
    return f"{algorithm}-{hexpart}"[:128]


def merged_index(existing: bytes | None, added: list[Descriptor]) -> bytes:
    """The fallback index with ``added`` in it (a descriptor already listed is not listed twice); other
    tools' entries are kept as they are."""
    entries: list[dict] = []
    if existing:
        try:
            entries = [e for e in json.loads(existing).get("manifests") or [] if isinstance(e, dict)]
        except (ValueError, AttributeError):
            entries = []
    have = {e.get("digest") for e in entries}
    entries += [d.to_dict() for d in added if d.digest not in have]
    return _canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
