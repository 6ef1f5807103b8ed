"""An OCI distribution client on httpx: schemes, auth challenges, retries and error translation.

Side effects: HTTP to one registry. httpx is a well-kept HTTP library; the distribution protocol itself is
written here (rather than taken from oras-py) because edgepack needs HEAD-before-upload, cross-repository
mounts, chunked uploads and exact accounting of what was sent, which oras-py does not expose.
"""

from __future__ import annotations

import hashlib
import logging
import ssl
import time
from typing import BinaryIO, Callable, Iterable, TYPE_CHECKING
from urllib.parse import urljoin


from edgepack import lazy
from edgepack.errors import AuthenticationError, RegistryError
from edgepack.oci.ref import ImageRef
from edgepack.registry.auth import Credentials, find_credentials, parse_challenge

if TYPE_CHECKING:
    import httpx
else:
    httpx = lazy.module("httpx")

log = logging.getLogger(__name__)
Body = bytes | Callable[[], Iterable[bytes]] | None
_RETRY_STATUS = {429, 500, 502, 503, 504}


def _login_hint(registry: str) -> str:
    return (f"Run 'docker login {registry}', or pass --registry-username with EDGEPACK_REGISTRY_PASSWORD set when "
            f"{registry} is the registry the command pushes to (a base image's registry takes its credentials from "
            "the inference config's baseImageRegistry or the docker config).")


def _describe(response: httpx.Response) -> str:
    try:
        errors = response.json().get("errors") or []
        text = "; ".join(f"{e.get('code', '').lower()}: {e.get('message', '')}".strip(": ") for e in errors)
    except (ValueError, AttributeError):
        text = ""
    return text or f"HTTP {response.status_code} {response.reason_phrase}".strip()


class RegistryClient:
    """Talks to one registry. TLS is verified (``ca_file`` adds a CA); plain HTTP only on loopback or when asked."""

    def __init__(self, registry: str, *, credentials: Credentials | tuple[str, str] | None = None,
                 ca_file: str | None = None, insecure_http: bool = False,
                 transport: httpx.BaseTransport | None = None, retries: int = 4, backoff: float = 0.2) -> None:
        self.registry = registry
        self._ref = ImageRef(registry, "x")
        if isinstance(credentials, tuple):
            credentials = Credentials(*credentials)
        self._credentials = credentials
        self._credentials_loaded = credentials is not None
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_file) if ca_file else True
        # Blob GETs are often redirected to storage; httpx drops Authorization on cross-origin redirects.
        self._http = httpx.Client(verify=verify, transport=transport, timeout=httpx.Timeout(60.0, connect=10.0),
                                  follow_redirects=True)
        self._plain_allowed = insecure_http or self._ref.is_loopback
        self._scheme = "http" if insecure_http else None
        self._retries = retries
        self._backoff = backoff
        self._tokens: dict[str, str] = {}
        self._basic = False

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    @property
    def credentials(self) -> Credentials | None:
        """Explicit credentials, else the environment's or docker config's (looked up once, lazily)."""
        if not self._credentials_loaded:
            self._credentials = find_credentials(self.registry)
            self._credentials_loaded = True
        return self._credentials

    def url(self, path: str) -> str:
        """Absolute URL of an API path (``/v2/...``) or of a Location header value."""
        if path.startswith(("http://", "https://")):
            return path
        return urljoin(f"{self._base_scheme()}://{self._ref.api_host}", path)

    def _base_scheme(self) -> str:
        if self._scheme is None:
            self._scheme = "https"
            if self._plain_allowed:
                try:
                    self._http.get(f"https://{self._ref.api_host}/v2/")
                except httpx.ConnectError as exc:
                    # A loopback registry that does not speak TLS (docker treats these as insecure registries too).
                    # A certificate it does not trust is not that: it speaks TLS, so HTTPS stays and fails loudly.
                    text = str(exc)
                    if "SSL" in text and "CERTIFICATE_VERIFY_FAILED" not in text:
                        self._scheme = "http"
                except httpx.HTTPError:
                    pass
        return self._scheme

    def _auth_header(self, scope: str) -> dict[str, str]:
        if scope in self._tokens:
            return {"Authorization": f"Bearer {self._tokens[scope]}"}
        if self._basic and self.credentials:
            return {"Authorization": self.credentials.basic()}
        return {}

    def _authenticate(self, response: httpx.Response, scope: str, action: str, sent: dict[str, str]) -> None:
        challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        creds = self.credentials
        if challenge.scheme == "basic":
            # Refused although Basic credentials were sent: they are wrong. (Another thread may have switched
            # to Basic meanwhile; then this request simply goes again with them.)
            if creds is None or sent.get("Authorization", "").startswith("Basic "):
                raise AuthenticationError(f"{action}: unauthorized: {_describe(response)}",
                                          hint=_login_hint(self.registry))
            self._basic = True
            return
        if challenge.scheme != "bearer" or "realm" not in challenge.params:
            raise AuthenticationError(f"{action}: unsupported auth challenge '{challenge.scheme}'",
                                      hint=_login_hint(self.registry))
        params = {"service": challenge.params.get("service", "")}
        params["scope"] = scope
        headers = {"Authorization": creds.basic()} if creds else {}
        try:
            token_resp = self._http.get(challenge.params["realm"], params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise RegistryError(f"{action}: token service unreachable: {exc}",
                                hint="Check the network path to the registry's token service.") from exc
        if token_resp.status_code in (401, 403):
            raise AuthenticationError(f"{action}: unauthorized: the token service refused the credentials",
                                      hint=_login_hint(self.registry))
        if token_resp.status_code != 200:
            raise RegistryError(f"{action}: token service answered {_describe(token_resp)}",
                                hint="Check the registry's status and try again.")
        body = token_resp.json()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise AuthenticationError(f"{action}: the token service returned no token", hint=_login_hint(self.registry))
        self._tokens[scope] = token

    def request(self, method: str, path: str, *, scope: str, action: str, headers: dict[str, str] | None = None,
                content: Body = None, ok: tuple[int, ...] = (200,), retry: bool = True) -> httpx.Response:
        """Send one API request with auth, retries and error translation.

        ``retry=False`` is for requests that must not be repeated blindly (a chunk of an upload): the caller
        restarts the whole upload instead. ``content`` may be a function returning the body, so a request can
        be sent again after an auth challenge.

        Raises:
            AuthenticationError: 401/403 after authenticating.
            RegistryError: any other unexpected status, or the registry is unreachable.
        """
        attempts = self._retries + 1 if retry else 1
        attempt, authed = 0, False
        while True:
            try:
                body = content() if callable(content) else content
                auth = self._auth_header(scope)
                response = self._http.request(method, self.url(path), content=body, headers={**(headers or {}), **auth})
            except httpx.TransportError as exc:
                attempt += 1
                if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                    hint = "Pass --ca-file with the CA that signed the registry's certificate."
                    raise RegistryError(f"{action}: the TLS certificate of '{self.registry}' is not trusted: {exc}",
                                        hint=hint) from exc
                if attempt < attempts:
                    log.info("%s: %s; retrying", action, exc)
                    time.sleep(self._backoff * 2 ** (attempt - 1))
                    continue
                raise RegistryError(f"{action}: cannot reach '{self.registry}': {exc}",
                                    hint="Check that the registry is running and the address is right.",
                                    temporary=True) from exc
            if response.status_code == 401 and not authed:
                self._authenticate(response, scope, action, auth)
                authed = True
                continue
            if response.status_code in ok:
                return response
            attempt += 1
            if response.status_code in _RETRY_STATUS and attempt < attempts:
                log.info("%s: %s; retrying", action, _describe(response))
                time.sleep(self._wait(response, attempt))
                continue
            raise self._error(response, action)

    def _wait(self, response: httpx.Response, attempt: int) -> float:
        """Seconds before trying again: the registry's Retry-After (capped at 30 s), else exponential backoff."""
        after = response.headers.get("Retry-After", "")
        if after.isdigit():
            return min(float(after), 30.0)
        return self._backoff * 2 ** (attempt - 1)

    def download(self, path: str, out: BinaryIO, *, scope: str, action: str) -> tuple[str, int]:
        """Stream a blob into ``out`` without holding it in memory; returns (sha256 digest, size).

        Raises:
            AuthenticationError, RegistryError: as ``request``; a dropped stream raises RegistryError (the
                caller starts the download again).
        """
        self.request("HEAD", path, scope=scope, action=action)  # answers auth challenges first
        digest, size = hashlib.sha256(), 0
        try:
            with self._http.stream("GET", self.url(path), headers=self._auth_header(scope)) as response:
                if response.status_code != 200:
                    response.read()
                    raise self._error(response, action)
                for chunk in response.iter_bytes(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
        except httpx.TransportError as exc:
            raise RegistryError(f"{action}: the download broke off: {exc}",
                                hint="Check the network to the registry and try again.", temporary=True) from exc
        return "sha256:" + digest.hexdigest(), size

    def _error(self, response: httpx.Response, action: str) -> RegistryError:
        if response.status_code in (401, 403):
            return AuthenticationError(f"{action}: unauthorized: {_describe(response)}",
                                       hint=_login_hint(self.registry))
        return RegistryError(f"{action}: {_describe(response)}",
                             hint="Check the reference and the registry's logs, then try again.",
                             temporary=response.status_code in _RETRY_STATUS, status=response.status_code)
