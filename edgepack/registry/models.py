"""Models in any OCI registry, as artifacts (edgepack.runtime.model_artifact): push a registered model, pull one
by tag or digest. Same client, auth and retry rules as images."""

from __future__ import annotations

import io
import json
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from edgepack.errors import ModelError, ModelNotFound, RegistryError
from edgepack.models.artifact import ModelArtifact
from edgepack.models.store import LocalModelStore
from edgepack.oci.descriptor import Descriptor
from edgepack.oci.ref import ImageRef
from edgepack.registry.client import RegistryClient
from edgepack.registry.pull import download_blob
from edgepack.registry.push import Progress, PushResult, push_image
from edgepack.runtime.model_artifact import (EMPTY_CONFIG, EMPTY_MEDIA_TYPE, FILE_MEDIA_TYPE, MANIFEST_MEDIA_TYPE,
                                             ArtifactError, ArtifactFile, ModelManifest, digest_of)


def model_manifest(artifact: ModelArtifact) -> ModelManifest:
    """The artifact manifest of a registered model (its bytes are the same on every machine)."""
    files = tuple(ArtifactFile(f.path, f"sha256:{f.sha256}", f.size) for f in artifact.files)
    return ModelManifest(name=artifact.name, version=artifact.version, sha256=artifact.sha256, files=files,
                         format=artifact.format, folder=artifact.folder,
                         inputs=tuple(t.to_dict() for t in artifact.inputs),
                         outputs=tuple(t.to_dict() for t in artifact.outputs))


def push_model(client: RegistryClient, ref: ImageRef, artifact: ModelArtifact, *,
               progress: Progress | None = None) -> PushResult:
    """Upload the model's files (those the registry lacks) and its manifest; tags it when ``ref`` has a tag.

    Raises:
        AuthenticationError, RegistryError: as for images; nothing is tagged unless every file arrived.
    """
    manifest = model_manifest(artifact)
    by_digest = {f.digest: artifact.root / f.path for f in manifest.files}
    blobs = [Descriptor(EMPTY_MEDIA_TYPE, digest_of(EMPTY_CONFIG), len(EMPTY_CONFIG))]
    blobs += [Descriptor(FILE_MEDIA_TYPE, f.digest, f.size) for f in manifest.files]

    def open_blob(digest: str) -> BinaryIO:
        return io.BytesIO(EMPTY_CONFIG) if digest == digest_of(EMPTY_CONFIG) else open(by_digest[digest], "rb")

    return push_image(client, ref, manifest=manifest.to_bytes(), manifest_media_type=MANIFEST_MEDIA_TYPE,
                      blobs=blobs, open_blob=open_blob, progress=progress)


def fetch_model_manifest(client: RegistryClient, ref: ImageRef) -> tuple[ModelManifest, str]:
    """The model manifest ``ref`` names and its digest (checked against ``ref``'s digest when it has one).

    Raises:
        RegistryError: not found, or not an edgepack model (saying what it is instead).
    """
    response = client.request("GET", f"/v2/{ref.repository}/manifests/{ref.reference}",
                              scope=f"repository:{ref.repository}:pull", action=f"pulling model '{ref}'",
                              headers={"Accept": MANIFEST_MEDIA_TYPE})
    body = response.content
    digest = digest_of(body)
    if ref.digest and digest != ref.digest:
        raise RegistryError(f"pulling model '{ref}': the registry served a manifest of digest {digest}",
                            hint="The registry altered the content; pull from another one.")
    try:
        return ModelManifest.parse(body), digest
    except ArtifactError as exc:
        kind = ""
        try:
            kind = json.loads(body).get("mediaType", "")
        except (ValueError, AttributeError):
            pass
        raise RegistryError(f"pulling model '{ref}': {exc}" + (f" (a {kind})" if kind else ""),
                            hint="Name a model pushed with 'edgepack model push'; images are pulled by "
                                 "'edgepack run' or used as base images.") from None


def pull_model_files(client: RegistryClient, ref: ImageRef, manifest: ModelManifest, blob_dir: Path,
                     dest: Path, *, progress: Progress | None = None) -> None:
    """Download the model's files (each checked against its digest; blobs already in ``blob_dir`` are reused)
    and lay them out under ``dest`` by their relative paths.

    Raises:
        RegistryError: a file is missing or does not match its digest.
    """
    blob_dir.mkdir(parents=True, exist_ok=True)
    for f in manifest.files:
        download_blob(client, ref, Descriptor(FILE_MEDIA_TYPE, f.digest, f.size), blob_dir, progress)
        target = dest / f.path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(blob_dir / f.digest[7:], target)


def pull_model(client: RegistryClient, ref: ImageRef, store: LocalModelStore, blob_dir: Path, *,
               progress: Progress | None = None) -> tuple[ModelArtifact, str]:
    """Register the model ``ref`` names in ``store`` under its own name and version; returns it and the
    manifest digest. Pulling a model the store already holds with the same content does nothing.

    Raises:
        RegistryError: as ``fetch_model_manifest`` and ``pull_model_files``.
        ModelError: the store holds that name and version with other content (nothing is changed then).
    """
    manifest, digest = fetch_model_manifest(client, ref)
    try:
        held = store.get(manifest.name, manifest.version)
    except ModelNotFound:
        held = None
    if held is not None:
        if held.sha256 == manifest.sha256:
            return held, digest
        raise ModelError(f"pulling model '{ref}': '{held.ref}' is registered here already with other content "
                         f"(sha256 {held.sha256[:12]}, the registry's is {manifest.sha256[:12]})",
                         hint=f"Delete the local one ('edgepack model delete {held.ref}') to take the registry's.")
    blob_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=blob_dir.parent, prefix=".tmp-pull-") as tmp:
        if manifest.folder or len(manifest.files) > 1:
            root = Path(tmp) / (manifest.folder or manifest.name)
            source = root
        else:
            root = Path(tmp)
            source = root / manifest.files[0].path
        pull_model_files(client, ref, manifest, blob_dir, root, progress=progress)
        artifact = store.register(manifest.name, source, version=manifest.version,
                                  description=f"pulled from {ref.name}@{digest}")
    if artifact.sha256 != manifest.sha256:
        store.delete(artifact.name, artifact.version)
        raise ModelError(f"pulling model '{ref}': the files add up to sha256 {artifact.sha256[:12]}, not the "
                         f"{manifest.sha256[:12]} its manifest names", hint="Push the model again.")
    return artifact, digest
