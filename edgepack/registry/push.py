"""Pushing an image: every blob is confirmed present (HEAD, mount or upload) before the manifest is put.

Side effects: HTTP to the registry. Putting the manifest last means an interrupted push never leaves a tag
pointing at missing blobs; blobs already uploaded are simply found by HEAD next time.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterator, Sequence

from edgepack.errors import AuthenticationError, RegistryError
from edgepack.oci.descriptor import Descriptor, sha256_digest
from edgepack.oci.ref import ImageRef
from edgepack.registry.client import RegistryClient

log = logging.getLogger(__name__)
# Progress of a blob transfer: (digest, bytes done, bytes in all).
Progress = Callable[[str, int, int], None]
_UPLOAD_TRIES = 5  # whole-blob restarts, for what resuming cannot mend
_CHUNK_TRIES = 6  # tries of one chunk, each resumed from where the registry says the upload stands
# The registry no longer knows the upload: it expired, or (distribution) a request carried the state of an
# offset the upload has passed because an earlier answer was lost, which cancels the upload.
_SESSION_LOST = (404, 416)


@dataclass(frozen=True)
class PushResult:
    """What a push did: the pinned reference, and which blobs were sent, found or mounted."""

    ref: ImageRef
    uploaded: tuple[str, ...]
    skipped: tuple[str, ...]
    mounted: tuple[str, ...]
    bytes_sent: int


def _scope(repo: str, *extra: str) -> str:
    return " ".join([f"repository:{repo}:pull,push", *(f"repository:{r}:pull" for r in extra)])


def blob_exists(client: RegistryClient, repo: str, digest: str) -> bool:
    """True when ``repo`` already has the blob (HEAD answers 200)."""
    response = client.request("HEAD", f"/v2/{repo}/blobs/{digest}", scope=_scope(repo),
                              action=f"checking blob {digest[:19]} in '{repo}'", ok=(200, 404))
    return response.status_code == 200


def _with_digest(location: str, digest: str) -> str:
    return f"{location}{'&' if '?' in location else '?'}digest={digest}"


def _chunks(f: BinaryIO, offset: int, length: int, counter: list[int],
            on_bytes: Callable[[int], None]) -> Iterator[bytes]:
    f.seek(offset)
    left = length
    while left > 0:
        data = f.read(min(1 << 20, left))
        if not data:
            raise RegistryError("reading blob: the file is shorter than its descriptor says",
                                hint="Rebuild the image; the local copy is damaged.")
        left -= len(data)
        counter[0] += len(data)
        on_bytes(len(data))
        yield data


class _Uploader:
    """Uploads one blob, monolithically or in chunks, counting bytes sent."""

    def __init__(self, client: RegistryClient, repo: str, open_blob: Callable[[str], BinaryIO], chunk_size: int,
                 progress: Progress | None) -> None:
        self.client, self.repo, self.open_blob = client, repo, open_blob
        self.chunk_size, self.progress = chunk_size, progress
        self.sent = 0
        self._lock = threading.Lock()

    def _count(self, desc: Descriptor, done: list[int]) -> Callable[[int], None]:
        def on_bytes(n: int) -> None:
            with self._lock:
                self.sent += n
            if self.progress:
                self.progress(desc.digest, min(done[0], desc.size), desc.size)
        return on_bytes

    def upload(self, desc: Descriptor, location: str | None = None) -> None:
        for attempt in range(_UPLOAD_TRIES):
            try:
                self._upload_once(desc, location if attempt == 0 else None)
                return
            except AuthenticationError:
                raise
            except RegistryError as exc:
                if blob_exists(self.client, self.repo, desc.digest):
                    return  # the last request went through, only its answer was lost
                restartable = exc.temporary or exc.status in _SESSION_LOST
                if attempt + 1 == _UPLOAD_TRIES or not restartable:
                    raise
                log.info("upload of %s failed (%s); starting it again", desc.digest[:19], exc.message)
                time.sleep(0.2 * 2 ** attempt)

    def _resume(self, location: str, scope: str, action: str, tried: int) -> tuple[int, str]:
        """Where an upload stands (distribution spec: GET on its URL answers 204 with ``Range: 0-<last>``):
        the next offset to send and the location to send it to. ``tried`` is the offset of the chunk that
        failed: "0-0" means nothing as well as one byte, and nothing it is when the first chunk failed."""
        resp = self.client.request("GET", location, scope=scope, action=action, ok=(204,))
        last = resp.headers.get("Range", "").rpartition("-")[2]
        following = int(last) + 1 if last.isdigit() else 0
        if following == 1 and tried == 0:
            following = 0
        return following, resp.headers.get("Location", location)

    def _patch(self, f: BinaryIO, desc: Descriptor, location: str, offset: int, done: list[int],
               on_bytes: Callable[[int], None], scope: str, action: str) -> tuple[int, str]:
        """Send the chunk at ``offset``, resuming from the registry's offset after a temporary failure; returns
        the next offset and location."""
        for attempt in range(_CHUNK_TRIES):
            length = min(self.chunk_size, desc.size - offset)
            headers = {"Content-Type": "application/octet-stream",
                       "Content-Range": f"{offset}-{offset + length - 1}", "Content-Length": str(length)}
            try:
                resp = self.client.request("PATCH", location, scope=scope, action=action, headers=headers,
                                           ok=(202,), retry=False,
                                           content=functools.partial(_chunks, f, offset, length, done, on_bytes))
                return offset + length, resp.headers["Location"]
            except RegistryError as exc:
                if attempt + 1 == _CHUNK_TRIES or not exc.temporary:
                    raise
                time.sleep(0.1 * 2 ** attempt)
                offset, location = self._resume(location, scope, action, offset)
                done[0] = offset
        raise AssertionError("unreachable")

    def _upload_once(self, desc: Descriptor, location: str | None) -> None:
        action = f"uploading blob {desc.digest[:19]} to '{self.client.registry}/{self.repo}'"
        scope = _scope(self.repo)
        if location is None:
            start = self.client.request("POST", f"/v2/{self.repo}/blobs/uploads/", scope=scope, action=action,
                                        ok=(202,))
            location = start.headers["Location"]
        done = [0]
        on_bytes = self._count(desc, done)
        with self.open_blob(desc.digest) as f:
            if desc.size <= self.chunk_size:
                headers = {"Content-Type": "application/octet-stream", "Content-Length": str(desc.size)}
                self.client.request("PUT", _with_digest(location, desc.digest), scope=scope, action=action,
                                    headers=headers, ok=(201,), retry=False,
                                    content=lambda: _chunks(f, 0, desc.size, done, on_bytes))
                return
            offset = 0
            while offset < desc.size:
                offset, location = self._patch(f, desc, location, offset, done, on_bytes, scope, action)
            # the closing PUT carries no body, so sending it again is safe
            self.client.request("PUT", _with_digest(location, desc.digest), scope=scope, action=action,
                                ok=(201,))


def _mount(client: RegistryClient, repo: str, desc: Descriptor, sources: Sequence[str]) -> tuple[bool, str | None]:
    """Try a cross-repository mount; returns (mounted, upload location to use when the registry declined)."""
    for source in sources:
        resp = client.request("POST", f"/v2/{repo}/blobs/uploads/?mount={desc.digest}&from={source}",
                              scope=_scope(repo, source), action=f"mounting blob {desc.digest[:19]} from '{source}'",
                              ok=(201, 202))
        if resp.status_code == 201:
            return True, None
        return False, resp.headers.get("Location")
    return False, None


def push_image(client: RegistryClient, ref: ImageRef, *, manifest: bytes, manifest_media_type: str,
               blobs: Sequence[Descriptor], open_blob: Callable[[str], BinaryIO], mount_from: Sequence[str] = (),
               chunk_size: int = 8 << 20, progress: Progress | None = None, workers: int = 4) -> PushResult:
    """Push blobs (config and layers) then the manifest, tagging it when ``ref`` has a tag.

    Raises:
        AuthenticationError: the registry refused the credentials.
        RegistryError: an upload or the manifest was rejected (nothing is tagged then).
    """
    repo = ref.repository
    uploader = _Uploader(client, repo, open_blob, chunk_size, progress)
    outcome: dict[str, str] = {}

    def ensure(desc: Descriptor) -> None:
        if blob_exists(client, repo, desc.digest):
            outcome[desc.digest] = "skipped"
            return
        mounted, location = _mount(client, repo, desc, mount_from)
        if mounted:
            outcome[desc.digest] = "mounted"
            return
        uploader.upload(desc, location)
        outcome[desc.digest] = "uploaded"

    unique = list({d.digest: d for d in blobs}.values())
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for future in [pool.submit(ensure, d) for d in unique]:
            future.result()
    digest = sha256_digest(manifest)
    target = ref.tag or digest
    response = client.request("PUT", f"/v2/{repo}/manifests/{target}", scope=_scope(repo),
                              action=f"pushing '{ref}'", headers={"Content-Type": manifest_media_type},
                              content=manifest, ok=(201, 200))
    echoed = response.headers.get("Docker-Content-Digest")
    if echoed and echoed != digest:
        raise RegistryError(f"pushing '{ref}': the registry stored digest {echoed}, expected {digest}",
                            hint="The registry rewrote the manifest; push to an OCI-compliant registry.")
    pick = lambda kind: tuple(d.digest for d in unique if outcome.get(d.digest) == kind)  # noqa: E731
    log.info("pushed %s: %d uploaded, %d present, %d mounted", ref, len(pick("uploaded")), len(pick("skipped")),
             len(pick("mounted")))
    return PushResult(ref=ref.with_digest(digest), uploaded=pick("uploaded"), skipped=pick("skipped"),
                      mounted=pick("mounted"), bytes_sent=uploader.sent + len(manifest))


@dataclass(frozen=True)
class IndexChild:
    """One platform's image of a multi-platform push."""

    manifest: bytes
    media_type: str
    blobs: Sequence[Descriptor]
    open_blob: Callable[[str], BinaryIO]


def push_index(client: RegistryClient, ref: ImageRef, *, index: bytes, media_type: str,
               children: Sequence[IndexChild], mount_from: Sequence[str] = (),
               progress: Progress | None = None) -> PushResult:
    """Push each platform's image by digest, then the index, tagging it when ``ref`` has a tag: the tag moves
    only once every image it lists is in the registry.

    Raises:
        AuthenticationError, RegistryError: as ``push_image``.
    """
    by_digest = ImageRef(ref.registry, ref.repository)
    results = [push_image(client, by_digest, manifest=child.manifest, manifest_media_type=child.media_type,
                          blobs=child.blobs, open_blob=child.open_blob, mount_from=mount_from, progress=progress)
               for child in children]
    top = push_image(client, ref, manifest=index, manifest_media_type=media_type, blobs=(),
                     open_blob=children[0].open_blob)
    merged = lambda kind: tuple(dict.fromkeys(d for r in results for d in getattr(r, kind)))  # noqa: E731
    return PushResult(ref=top.ref, uploaded=merged("uploaded"), skipped=merged("skipped"),
                      mounted=merged("mounted"), bytes_sent=top.bytes_sent + sum(r.bytes_sent for r in results))
