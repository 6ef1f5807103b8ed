"""Multi-platform images: platform names and the OCI image index that lists one manifest per platform.
Pure values, no I/O."""

from __future__ import annotations

import json
import platform as host
from typing import Sequence

from edgepack.oci.descriptor import OCI_INDEX, OCI_MANIFEST, Descriptor, sha256_digest

# What edgepack builds for: the architectures manylinux wheels exist for, as OCI names them.
PLATFORMS = ("linux/amd64", "linux/arm64")
_MACHINES = {"x86_64": "linux/amd64", "amd64": "linux/amd64", "aarch64": "linux/arm64", "arm64": "linux/arm64"}


def parse_platforms(text: str) -> tuple[str, ...]:
    """``linux/amd64,linux/arm64`` as a tuple in the order given (duplicates dropped).

    Raises:
        ValueError: an empty list or a platform edgepack does not build for (named in the message).
    """
    names = [p.strip().lower() for p in text.split(",") if p.strip()]
    if not names:
        raise ValueError("no platform named")
    for name in names:
        if name not in PLATFORMS:
            raise ValueError(f"platform '{name}' is not one edgepack builds for ({', '.join(PLATFORMS)})")
    return tuple(dict.fromkeys(names))


def host_platform() -> str:
    """The platform this machine runs natively (linux/amd64 when it is neither)."""
    return _MACHINES.get(host.machine().lower(), "linux/amd64")


def platform_dict(name: str) -> dict[str, str]:
    os_name, _, arch = name.partition("/")
    return {"architecture": arch, "os": os_name}


def platform_name(platform: dict[str, str] | None) -> str:
    platform = platform or {}
    return f"{platform.get('os', '')}/{platform.get('architecture', '')}"


def image_index(children: Sequence[tuple[str, bytes]]) -> bytes:
    """The index of ``(platform, manifest bytes)`` pairs, in that order; canonical JSON, so the same images
    always give the same index digest."""
    manifests = [Descriptor(OCI_MANIFEST, sha256_digest(body), len(body), platform=platform_dict(name)).to_dict()
                 for name, body in children]
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests},
                      sort_keys=True, separators=(",", ":")).encode()
