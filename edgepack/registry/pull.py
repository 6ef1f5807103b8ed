"""Pulling an image into the local content-addressed cache: resolve, pick the platform, verify every blob.

Side effects: HTTP to the registry and files under ``cache_dir/blobs/sha256``. A blob is downloaded to a
temporary file, checked against its digest and size, then renamed into place.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgepack.errors import RegistryError
from edgepack.oci.descriptor import INDEX_TYPES, MANIFEST_TYPES, Descriptor, sha256_digest
from edgepack.oci.imageindex import platform_name
from edgepack.oci.integrity import intact, mark_verified
from edgepack.oci.ref import ImageRef
from edgepack.registry.push import Progress
from edgepack.registry.client import RegistryClient
from edgepack.runtime.files import staged_file

ACCEPT = ", ".join((*MANIFEST_TYPES, *INDEX_TYPES))


@dataclass(frozen=True)
class PulledImage:
    """An image whose config and layers are in the cache, pinned by digest."""

    ref: ImageRef
    manifest: dict[str, Any]
    manifest_bytes: bytes
    manifest_media_type: str
    config: dict[str, Any]
    config_descriptor: Descriptor
    layers: tuple[Descriptor, ...]
    blob_dir: Path

    def blob_path(self, digest: str) -> Path:
        """Where a blob of this image is cached."""
        return self.blob_dir / digest.split(":", 1)[1]


def _scope(ref: ImageRef) -> str:
    return f"repository:{ref.repository}:pull"


def _get_manifest(client: RegistryClient, ref: ImageRef, reference: str) -> tuple[bytes, str]:
    resp = client.request("GET", f"/v2/{ref.repository}/manifests/{reference}", scope=_scope(ref),
                          action=f"pulling '{ref}'", headers={"Accept": ACCEPT})
    body = resp.content
    media = resp.headers.get("Content-Type", "").split(";")[0] or json.loads(body).get("mediaType", "")
    if reference.startswith("sha256:") and sha256_digest(body) != reference:
        raise RegistryError(f"pulling '{ref}': manifest digest mismatch", hint="The registry served altered content.")
    return body, media


def resolve_digest(client: RegistryClient, ref: ImageRef) -> str:
    """The digest a tag points to now (of the index when the tag names a multi-platform image)."""
    body, _ = _get_manifest(client, ref, ref.reference)
    return sha256_digest(body)


def _pick_platform(ref: ImageRef, index: dict[str, Any], platform: str) -> str:
    os_name, _, arch = platform.partition("/")
    arch, _, variant = arch.partition("/")
    seen = []
    for entry in index.get("manifests", []):
        plat = entry.get("platform") or {}
        seen.append(f"{plat.get('os')}/{plat.get('architecture')}")
        if (plat.get("os") == os_name and plat.get("architecture") == arch
                and (not variant or plat.get("variant") == variant)):
            return entry["digest"]
    raise RegistryError(f"pulling '{ref}': no image for platform {platform}",
                        hint=f"Available platforms: {', '.join(seen) or 'none'}; choose another base image.")


def download_blob(client: RegistryClient, ref: ImageRef, desc: Descriptor, blob_dir: Path,
                  progress: Progress | None, tries: int = 3) -> None:
    """Fetch one blob into ``blob_dir`` (named by its digest hex) unless an intact copy is there; the digest and
    size are checked before it appears, and a download that breaks off is tried again.

    Raises:
        RegistryError: the blob is missing, or does not match its digest or size.
    """
    final = blob_dir / desc.digest.split(":", 1)[1]
    if intact(final, desc.digest, desc.size):
        return
    action = f"pulling blob {desc.digest[:19]} of '{ref}'"
    for attempt in range(1, tries + 1):
        try:
            with staged_file(blob_dir) as (f, tmp):
                digest, size = client.download(f"/v2/{ref.repository}/blobs/{desc.digest}", f, scope=_scope(ref),
                                               action=action)
                if digest != desc.digest or size != desc.size:
                    raise RegistryError(f"{action}: content does not match its digest or size",
                                        hint="Try again; if it persists the registry's storage is damaged.")
                f.close()
                os.replace(tmp, final)
            mark_verified(final)
            if progress:
                progress(desc.digest, desc.size, desc.size)
            return
        except RegistryError as exc:
            if attempt == tries or not exc.temporary:
                raise


def fetch_config(client: RegistryClient, ref: ImageRef, *, platform: str = "linux/amd64") -> dict[str, Any]:
    """The image config (labels, env, history) without pulling any layer.

    Raises:
        RegistryError: as ``pull_image``.
    """
    body, media = _get_manifest(client, ref, ref.reference)
    manifest = json.loads(body)
    if media in INDEX_TYPES or "manifests" in manifest:
        body, media = _get_manifest(client, ref, _pick_platform(ref, manifest, platform))
        manifest = json.loads(body)
    return _config_of(client, ref, manifest)


def _config_of(client: RegistryClient, ref: ImageRef, manifest: dict[str, Any]) -> dict[str, Any]:
    """The config blob an image manifest names, checked against its digest."""
    desc = Descriptor.from_dict(manifest["config"])
    resp = client.request("GET", f"/v2/{ref.repository}/blobs/{desc.digest}", scope=_scope(ref),
                          action=f"reading the config of '{ref}'")
    if sha256_digest(resp.content) != desc.digest:
        raise RegistryError(f"reading the config of '{ref}': content does not match its digest",
                            hint="The registry served altered content.")
    return json.loads(resp.content)


def image_platforms(client: RegistryClient, ref: ImageRef) -> dict[str, str]:
    """``{platform: image manifest digest}`` of ``ref``: each entry of an index, or the one image.

    Raises:
        RegistryError: as ``pull_image``.
    """
    body, media = _get_manifest(client, ref, ref.reference)
    manifest = json.loads(body)
    if media in INDEX_TYPES or "manifests" in manifest:
        return {platform_name(e["platform"]): e["digest"]
                for e in manifest.get("manifests", []) if (e.get("platform") or {}).get("architecture")}
    config = _config_of(client, ref, manifest)
    return {f"{config.get('os', 'linux')}/{config.get('architecture', 'amd64')}": sha256_digest(body)}


def pull_image(client: RegistryClient, ref: ImageRef, *, cache_dir: Path, platform: str = "linux/amd64",
               progress: Progress | None = None) -> PulledImage:
    """Pull ``ref`` for ``platform`` into ``cache_dir``; blobs already cached are not downloaded again.

    Raises:
        RegistryError: the reference, platform or a blob cannot be had, or content does not verify.
    """
    body, media = _get_manifest(client, ref, ref.reference)
    manifest = json.loads(body)
    media = media or manifest.get("mediaType", "")
    if media in INDEX_TYPES or "manifests" in manifest:
        digest = _pick_platform(ref, manifest, platform)
        body, media = _get_manifest(client, ref, digest)
        manifest = json.loads(body)
    if media not in MANIFEST_TYPES and manifest.get("mediaType") not in MANIFEST_TYPES:
        raise RegistryError(f"pulling '{ref}': unsupported manifest type '{media}'",
                            hint="Use an image built for Docker or OCI runtimes.")
    blob_dir = cache_dir / "blobs" / "sha256"
    blob_dir.mkdir(parents=True, exist_ok=True)
    config_desc = Descriptor.from_dict(manifest["config"])
    layers = tuple(Descriptor.from_dict(d) for d in manifest["layers"])
    for desc in (config_desc, *layers):
        download_blob(client, ref, desc, blob_dir, progress)
    config = json.loads((blob_dir / config_desc.digest.split(":", 1)[1]).read_bytes())
    return PulledImage(ref=ref.with_digest(sha256_digest(body)), manifest=manifest, manifest_bytes=body,
                       manifest_media_type=media or manifest.get("mediaType", ""), config=config,
                       config_descriptor=config_desc, layers=layers, blob_dir=blob_dir)
