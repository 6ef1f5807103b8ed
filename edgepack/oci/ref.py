"""ImageRef: a parsed ``registry/repository[:tag][@digest]`` reference. Pure value, docker's naming rules."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from edgepack.errors import InvalidReference

DOCKER_HUB = "docker.io"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$", re.ASCII)
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_HINT = "Write it as REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@sha256:DIGEST, in lowercase."


@dataclass(frozen=True)
class ImageRef:
    """A reference to an image in a registry; ``digest`` pins it, ``tag`` names it."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> "ImageRef":
        """Parse a reference as docker does (``ubuntu`` is ``docker.io/library/ubuntu``).

        Raises:
            InvalidReference: the text is not a valid reference.
        """
        if not text or text != text.strip():
            raise InvalidReference(f"parsing image reference '{text}': empty or padded with spaces", hint=_HINT)
        name, _, digest = text.partition("@")
        tag = None
        last = name.rsplit("/", 1)[-1]
        if ":" in last:
            name, tag = name.rsplit(":", 1)
        first, sep, rest = name.partition("/")
        if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
            registry, repository = first, rest
        else:
            registry, repository = DOCKER_HUB, name
        if registry == DOCKER_HUB and "/" not in repository:
            repository = f"library/{repository}"
        problem = None
        if not _REPO.fullmatch(repository):
            problem = f"invalid repository name '{repository}'"
        elif tag is not None and not _TAG.fullmatch(tag):
            problem = f"invalid tag '{tag}'"
        elif digest and not _DIGEST.fullmatch(digest):
            problem = f"invalid digest '{digest}' (expected sha256: and 64 hex digits)"
        if problem:
            raise InvalidReference(f"parsing image reference '{text}': {problem}", hint=_HINT)
        return cls(registry, repository, tag, digest or None)

    def __str__(self) -> str:
        out = f"{self.registry}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    @property
    def name(self) -> str:
        """``registry/repository`` without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/`` in the API: the digest when pinned, else the tag (``latest`` by default)."""
        return self.digest or self.tag or "latest"

    def with_digest(self, digest: str | None) -> "ImageRef":
        """The same reference pinned to ``digest`` (tag dropped, as in ``repo@sha256:...``)."""
        return replace(self, tag=None if digest else self.tag, digest=digest)

    def with_tag(self, tag: str) -> "ImageRef":
        """The same repository with another tag and no digest."""
        return replace(self, tag=tag, digest=None)

    @property
    def is_loopback(self) -> bool:
        """True for registries on this machine (127.0.0.0/8, localhost, ::1), where plain HTTP is acceptable."""
        host = self.registry
        if host.startswith("["):
            host = host[1:].split("]", 1)[0]
        else:
            host = host.split(":", 1)[0]
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    @property
    def api_host(self) -> str:
        """The host serving the registry API (Docker Hub's API lives on another name)."""
        return "registry-1.docker.io" if self.registry == DOCKER_HUB else self.registry
