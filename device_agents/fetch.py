"""Fetching a model onto the device: from an OCI registry by digest (edgepack's model artifacts) or from an
HTTPS URL, resuming interrupted downloads with HTTP Range and verifying every byte's sha256.

Side effects: HTTP(S) and files under the download folder. Stdlib only (the image carries no HTTP library).
TLS is verified; plain HTTP only to a loopback host. Credentials (Basic, or a registry's Bearer token got with
them) go only to the host that asked for them: a redirect to another host (blob storage) drops them.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import ipaddress
import json
import os
import re
import shutil
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable

from edgepack.runtime.model_artifact import MANIFEST_MEDIA_TYPE, ArtifactError, ModelManifest, digest_of

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_CHUNK = 1 << 20
_RETRY_STATUS = {408, 429, 500, 502, 503, 504}


class FetchError(Exception):
    """The model could not be fetched or is not what was asked for. ``transient``: worth trying again later."""

    def __init__(self, message: str, *, transient: bool = False, status: int = 0) -> None:
        super().__init__(message)
        self.transient, self.status = transient, status


def is_digest(text: str) -> bool:
    """``text`` is ``sha256:`` and 64 lowercase hex digits."""
    return bool(_DIGEST.fullmatch(text))


def _retry_wait(attempt: int) -> float:
    return min(8.0, 0.25 * 2 ** attempt)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Source:
    """Where a model comes from: ``kind`` ``oci`` (``host``, ``repository``) or ``https`` (``url``)."""

    kind: str
    url: str = ""
    host: str = ""
    repository: str = ""


def parse_uri(uri: str) -> Source:
    """``https://...`` (or ``http://`` to loopback), or an OCI reference ``HOST/REPO[:TAG][@DIGEST]``
    (optionally ``oci://``-prefixed); the digest to fetch is the desired ``digest``, not the reference's tag.

    Raises:
        FetchError: neither form, or plain HTTP to a host that is not loopback.
    """
    if not isinstance(uri, str) or not uri:
        raise FetchError("the model has no uri")
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme in ("https", "http"):
        if parts.scheme == "http" and not is_loopback(parts.hostname or ""):
            raise FetchError(f"model uri {uri!r}: plain HTTP is allowed to loopback only; use https")
        return Source("https", url=uri)
    ref = uri[len("oci://"):] if uri.startswith("oci://") else uri
    ref = ref.split("@", 1)[0]
    host, _, path = ref.partition("/")
    if ":" in path.rsplit("/", 1)[-1]:
        path = path.rsplit(":", 1)[0]
    if not path or not ("." in host or ":" in host or host == "localhost"):
        raise FetchError(f"model uri {uri!r} is neither an https URL nor an OCI reference HOST/REPOSITORY[@DIGEST]")
    return Source("oci", host=host, repository=path)


class _KeepAuthToSameHost(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
            new.headers.pop("Authorization", None)
            new.unredirected_hdrs.pop("Authorization", None)
        return new


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.partition(" ")
    return scheme.lower(), dict(re.findall(r'(\w+)="([^"]*)"', rest))


class Fetcher:
    """Downloads with retries (backoff while ``stop`` is not set), auth challenges and Range resume."""

    def __init__(self, *, username: str | None = None, password: str | None = None, ca_file: str | None = None,
                 timeout: float = 30.0, retries: int = 5, stop: threading.Event | None = None) -> None:
        context = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
        self._opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _KeepAuthToSameHost)
        self._basic = (f"Basic {base64.b64encode(f'{username}:{password}'.encode()).decode()}"
                       if username and password else None)
        self._auth: dict[str, str] = {}  # host → Authorization value that host accepted
        self._timeout, self._retries = timeout, retries
        self._stop = stop or threading.Event()
        self.bytes_fetched = 0

    # -- HTTP
    def _open(self, url: str, headers: dict[str, str]) -> Any:
        """A response with status < 400, after at most one auth challenge, retrying what may pass."""
        host = urllib.parse.urlsplit(url).netloc
        attempt = 0
        while True:
            sent = dict(headers)
            if host in self._auth:
                sent["Authorization"] = self._auth[host]
            try:
                return self._opener.open(urllib.request.Request(url, headers=sent), timeout=self._timeout)
            except urllib.error.HTTPError as exc:
                exc.close()
                if exc.code == 401 and host not in self._auth:
                    self._auth[host] = self._authorize(exc.headers.get("WWW-Authenticate", ""), url)
                    continue
                if exc.code not in _RETRY_STATUS:
                    raise FetchError(f"GET {url}: HTTP {exc.code} {exc.reason}", status=exc.code) from None
                problem = f"HTTP {exc.code}"
            except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
                problem = str(getattr(exc, "reason", exc))
            attempt += 1
            if attempt > self._retries or self._stop.wait(_retry_wait(attempt)):
                raise FetchError(f"GET {url}: {problem}", transient=True)

    def _authorize(self, header: str, url: str) -> str:
        scheme, params = _challenge(header)
        if scheme == "basic" and self._basic:
            return self._basic
        if scheme != "bearer" or "realm" not in params:
            raise FetchError(f"GET {url}: unauthorized ({header or 'no challenge'}); set "
                             "EDGEPACK_MODEL_REGISTRY_USERNAME and EDGEPACK_MODEL_REGISTRY_PASSWORD")
        query = urllib.parse.urlencode({k: v for k, v in params.items() if k in ("service", "scope")})
        request = urllib.request.Request(f"{params['realm']}?{query}",
                                         headers={"Authorization": self._basic} if self._basic else {})
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                body = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise FetchError(f"GET {url}: the registry's token service refused or failed: {exc}") from None
        token = body.get("token") or body.get("access_token")
        if not token:
            raise FetchError(f"GET {url}: the registry's token service returned no token")
        return f"Bearer {token}"

    def read(self, url: str, headers: dict[str, str], limit: int = 4 << 20) -> bytes:
        """A small document (a manifest)."""
        with self._open(url, headers) as response:
            body = response.read(limit + 1)
        if len(body) > limit:
            raise FetchError(f"GET {url}: more than {limit} bytes")
        self.bytes_fetched += len(body)
        return body

    def download(self, url: str, path: str, digest: str, size: int | None,
                 progress: Callable[[int], None] | None = None) -> None:
        """``url``'s bytes into ``path``, resuming what a ``path + '.part'`` holds; checked against ``digest``
        (``sha256:...``) and ``size`` before ``path`` appears.

        Raises:
            FetchError: the bytes do not match (the partial file is removed), or the download kept failing
                (``transient``; the partial file stays for the next try).
        """
        part = path + ".part"
        attempt = 0
        while True:
            have = os.path.getsize(part) if os.path.exists(part) else 0
            if size is not None and have > size:
                os.unlink(part)
                have = 0
            if size is not None and have == size:
                break
            try:
                self._fetch_range(url, part, have, progress)
                if size is None or os.path.getsize(part) >= size:
                    break
                problem = "the connection ended early"
            except FetchError as exc:
                if exc.status == 416 and have:
                    break  # nothing after what we have: the digest check below decides
                if not exc.transient:
                    raise
                problem = str(exc)
            except (OSError, http.client.HTTPException) as exc:
                problem = str(exc)
            attempt += 1
            if attempt > self._retries or self._stop.wait(_retry_wait(attempt)):
                raise FetchError(f"downloading {url}: {problem} ({os.path.getsize(part)} bytes kept to resume)",
                                 transient=True)
        got = _sha256_file(part)
        if got != digest or (size is not None and os.path.getsize(part) != size):
            os.unlink(part)
            raise FetchError(f"downloaded {url}: its sha256 is {got}, not {digest}")
        os.replace(part, path)

    def _fetch_range(self, url: str, part: str, have: int, progress: Callable[[int], None] | None) -> None:
        headers = {"Range": f"bytes={have}-"} if have else {}
        with self._open(url, headers) as response:
            resumed = response.status == 206
            with open(part, "ab" if resumed else "wb") as out:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    self.bytes_fetched += len(chunk)
                    if progress:
                        progress(len(chunk))
                    if self._stop.is_set():
                        raise FetchError("stopped", transient=True)


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _registry_base(host: str) -> str:
    return f"{'http' if is_loopback(host.rsplit(':', 1)[0]) else 'https'}://{host}"


def fetch_model(fetcher: Fetcher, source: Source, digest: str, dest: str, *, size: int | None = None,
                file_name: str = "") -> ModelManifest | None:
    """The model ``digest`` names, as files under ``dest``; for OCI also its manifest (read again when ``dest``
    exists already). Files already downloaded into ``dest + '.partial'`` are kept and resumed.

    Raises:
        FetchError: as ``Fetcher.download``; an OCI manifest that is not this digest or not an edgepack model.
    """
    if not is_digest(digest or ""):
        raise FetchError(f"the model digest {digest!r} is not sha256:<64 hex digits>")
    partial = dest + ".partial"
    manifest = None
    if source.kind == "oci":
        base = f"{_registry_base(source.host)}/v2/{source.repository}"
        body = fetcher.read(f"{base}/manifests/{digest}", {"Accept": MANIFEST_MEDIA_TYPE})
        if digest_of(body) != digest:
            raise FetchError(f"the registry's manifest for {digest} has another digest")
        try:
            manifest = ModelManifest.parse(body)
        except ArtifactError as exc:
            raise FetchError(f"{source.host}/{source.repository}@{digest}: {exc}") from None
        if os.path.isdir(dest):
            return manifest  # fetched before (and checked then)
        os.makedirs(partial, exist_ok=True)
        root = os.path.join(partial, manifest.folder) if manifest.folder else partial
        for item in manifest.files:
            target = os.path.join(root, *item.path.split("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if not os.path.exists(target):
                fetcher.download(f"{base}/blobs/{item.digest}", target, item.digest, item.size)
    elif os.path.isdir(dest):
        return None
    else:
        name = file_name or os.path.basename(urllib.parse.urlsplit(source.url).path) or "model.onnx"
        if "/" in name or name in (".", ".."):
            raise FetchError(f"the model file name {name!r} is not a plain name")
        os.makedirs(partial, exist_ok=True)
        target = os.path.join(partial, name)
        if not os.path.exists(target):
            fetcher.download(source.url, target, digest, size)
    if os.path.exists(dest):
        shutil.rmtree(dest)
    os.replace(partial, dest)
    return manifest

