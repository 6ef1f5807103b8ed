"""Referrers in a registry (OCI distribution 1.1): push an image's SBOM and provenance as artifact manifests
whose subject is the image, and list them back.

Side effects: HTTP to one registry. Where the registry answers the referrers API
(``GET /v2/<name>/referrers/<digest>``) it keeps the list itself; where it does not (a 404, as the CNCF
distribution registry 2.x answers), the list is the tag-schema fallback: an image index tagged
``sha256-<hex of the subject>``, read, extended and written back.
"""

from __future__ import annotations

import io
import json

from edgepack.errors import RegistryError
from edgepack.oci.descriptor import OCI_INDEX, OCI_MANIFEST, Descriptor, sha256_digest
from edgepack.oci.ref import ImageRef
from edgepack.oci.referrers import EMPTY, EMPTY_DESCRIPTOR, descriptor_of, fallback_tag, merged_index
from edgepack.registry.client import RegistryClient
from edgepack.registry.push import push_image

REFERRERS_API = "referrers API"
TAG_SCHEMA = "tag schema"


def _scope(repo: str, push: bool = False) -> str:
    return f"repository:{repo}:pull,push" if push else f"repository:{repo}:pull"


def _api_index(client: RegistryClient, repo: str, subject: str) -> dict | None:
    """The registry's referrers index of ``subject``, or None when it has no referrers API."""
    response = client.request("GET", f"/v2/{repo}/referrers/{subject}", scope=_scope(repo),
                              action=f"listing referrers of {subject[:19]} in '{repo}'",
                              headers={"Accept": OCI_INDEX}, ok=(200, 404))
    if response.status_code != 200 or not response.headers.get("Content-Type", "").startswith(OCI_INDEX):
        return None
    try:
        data = json.loads(response.content)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _fallback_index(client: RegistryClient, repo: str, subject: str) -> bytes | None:
    response = client.request("GET", f"/v2/{repo}/manifests/{fallback_tag(subject)}", scope=_scope(repo),
                              action=f"reading the referrers of {subject[:19]} in '{repo}'",
                              headers={"Accept": OCI_INDEX}, ok=(200, 404))
    return response.content if response.status_code == 200 else None


def push_referrers(client: RegistryClient, ref: ImageRef, subject: str,
                   artifacts: list[tuple[bytes, bytes]]) -> str:
    """Push ``artifacts`` ((artifact manifest, document) pairs whose subject is ``subject``) to ``ref``'s
    repository; returns how the registry keeps them (``REFERRERS_API`` or ``TAG_SCHEMA``).

    Raises:
        AuthenticationError, RegistryError: an upload or a manifest was rejected.
    """
    repo = ref.repository
    by_digest = ImageRef(ref.registry, repo)
    for manifest, document in artifacts:
        blobs = {EMPTY_DESCRIPTOR.digest: EMPTY, sha256_digest(document): document}
        described = [EMPTY_DESCRIPTOR, Descriptor(json.loads(manifest)["artifactType"], sha256_digest(document),
                                                  len(document))]
        push_image(client, by_digest, manifest=manifest, manifest_media_type=OCI_MANIFEST, blobs=described,
                   open_blob=lambda digest, blobs=blobs: io.BytesIO(blobs[digest]))  # type: ignore[misc]
    if _api_index(client, repo, subject) is not None:
        return REFERRERS_API
    index = merged_index(_fallback_index(client, repo, subject), [descriptor_of(m) for m, _ in artifacts])
    client.request("PUT", f"/v2/{repo}/manifests/{fallback_tag(subject)}", scope=_scope(repo, push=True),
                   action=f"tagging the referrers of {subject[:19]} in '{repo}'",
                   headers={"Content-Type": OCI_INDEX}, content=index, ok=(201, 200))
    return TAG_SCHEMA


def list_referrers(client: RegistryClient, ref: ImageRef, subject: str) -> tuple[list[Descriptor], str]:
    """The referrers of ``subject`` in ``ref``'s repository and where they were found."""
    repo = ref.repository
    data = _api_index(client, repo, subject)
    how = REFERRERS_API
    if data is None:
        body, how = _fallback_index(client, repo, subject), TAG_SCHEMA
        data = json.loads(body) if body else {"manifests": []}
    try:
        return [Descriptor.from_dict(d) for d in data.get("manifests") or []], how
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RegistryError(f"listing the referrers of {subject[:19]} in '{repo}': malformed index ({exc})",
                            hint="Push the image again to write a fresh list.") from exc


def fetch_document(client: RegistryClient, ref: ImageRef, manifest_digest: str) -> bytes:
    """The document an artifact manifest carries (its one layer), checked against its digest.

    Raises:
        RegistryError: the manifest or the document is missing or altered.
    """
    repo = ref.repository
    action = f"reading artifact {manifest_digest[:19]} in '{repo}'"
    response = client.request("GET", f"/v2/{repo}/manifests/{manifest_digest}", scope=_scope(repo), action=action,
                              headers={"Accept": OCI_MANIFEST})
    if sha256_digest(response.content) != manifest_digest:
        raise RegistryError(f"{action}: manifest digest mismatch", hint="The registry served altered content.")
    layer = Descriptor.from_dict(json.loads(response.content)["layers"][0])
    blob = client.request("GET", f"/v2/{repo}/blobs/{layer.digest}", scope=_scope(repo), action=action).content
    if sha256_digest(blob) != layer.digest:
        raise RegistryError(f"{action}: document digest mismatch", hint="The registry served altered content.")
    return blob
