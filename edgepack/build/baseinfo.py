"""Facts about a base image read from its layers: the Python version, the glibc version, the architecture and
the Debian packages installed (its dpkg status, for the image's SBOM).

Side effects: reads the base's cached layer blobs; results are cached by the base's manifest digest. These facts
pick the wheels for the dependency layer, so the image gets packages its own interpreter and C library accept,
without running anything inside the image.
"""

from __future__ import annotations

import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

from edgepack.build.cache import Cache
from edgepack.errors import PackagingError

_PYTHON = re.compile(r"^(?:\./)?(?:usr/local/bin|usr/bin)/python3\.(\d+)$")
_LIBC = re.compile(r"^(?:\./)?(?:usr/)?lib(?:64)?/(?:[a-z0-9_]+-linux-gnu/)?libc\.so\.6$")
_LIBC_VERSION = re.compile(rb"GNU C Library[^\n]*?version (\d+)\.(\d+)")
_LIBC_FILE = re.compile(r"libc-(\d+)\.(\d+)\.so$")
_DPKG_STATUS = re.compile(r"^(?:\./)?var/lib/dpkg/(?:status|status\.d/[^/]+)$")
# A top-level Python module of the base: in the standard library, lib-dynload or a site/dist-packages folder.
_MODULE = re.compile(r"^(?:\./)?(?:usr/(?:local/)?lib|opt/[^/]+/lib)/python3(?:\.\d+)?/"
                     r"(?:lib-dynload/|(?:site|dist)-packages/)?"
                     r"([A-Za-z_][A-Za-z0-9_]*)(?:\.py$|/|\.cpython-[^/]*\.so$|\.abi3\.so$|\.so$)")


@dataclass(frozen=True)
class BaseInfo:
    """What the dependency resolver needs to know about a base image."""

    python_version: str | None
    glibc: tuple[int, int] | None
    arch: str
    # Top-level modules its Pythons can import (standard library and installed packages).
    modules: frozenset[str] = frozenset()
    # Installed Debian packages: (name, version, architecture), sorted by name.
    debian_packages: tuple[tuple[str, str, str], ...] = ()


def parse_dpkg_status(text: str) -> list[tuple[str, str, str]]:
    """(name, version, architecture) of each package a dpkg status file lists as installed."""
    out = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if "Package" in fields and fields.get("Status", "install ok installed").endswith(" installed"):
            out.append((fields["Package"], fields.get("Version", ""), fields.get("Architecture", "")))
    return out


def _scan_layer(path: Path, found: dict) -> None:
    with tarfile.open(path, mode="r|*") as tar:
        for member in tar:
            name = member.name
            if m := _MODULE.match(name):
                found.setdefault("modules", set()).add(m.group(1))
            if _DPKG_STATUS.match(name) and member.isfile() and name not in found.setdefault("dpkg_seen", set()):
                # the top layer's copy of each status file wins (layers are read top first)
                found["dpkg_seen"].add(name)
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                listed = parse_dpkg_status(data.decode("utf-8", "replace"))
                found.setdefault("dpkg", {}).update({p[0]: p for p in listed})
            if "python" not in found and (m := _PYTHON.match(name)):
                found.setdefault("pythons", set()).add(int(m.group(1)))
            elif "glibc" not in found and _LIBC.match(name) and member.isfile():
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                if version := _LIBC_VERSION.search(data):
                    found["glibc"] = (int(version.group(1)), int(version.group(2)))
            elif "glibc" not in found and (m := _LIBC_FILE.search(name)):
                found["glibc"] = (int(m.group(1)), int(m.group(2)))


def inspect_base(config: dict, layer_paths: list[Path], *, cache: Cache, manifest_digest: str) -> BaseInfo:
    """Read the Python and glibc versions from the base image's layers (top layer first), with caching.

    Raises:
        PackagingError: a layer blob could not be read.
    """
    key = manifest_digest.replace(":", "-")
    cached = cache.read_index("baseinfo", key)
    if cached and "debian_packages" in cached:
        glibc = tuple(cached["glibc"]) if cached["glibc"] else None
        return BaseInfo(cached["python_version"], glibc, cached["arch"], frozenset(cached["modules"]),
                        tuple(tuple(p) for p in cached["debian_packages"]))
    found: dict = {}
    for path in reversed(layer_paths):
        try:
            _scan_layer(path, found)
        except (OSError, tarfile.TarError) as exc:
            raise PackagingError(f"reading base image layer '{path.name}': {exc}",
                                 hint="Remove the cache directory and package again.") from exc
    pythons = sorted(found.get("pythons", ()))
    info = BaseInfo(
        python_version=f"3.{pythons[-1]}" if pythons else None,
        glibc=found.get("glibc"),
        arch=config.get("architecture", "amd64"),
        modules=frozenset(found.get("modules", ())),
        debian_packages=tuple(sorted(found.get("dpkg", {}).values())),
    )
    cache.write_index("baseinfo", key, {"python_version": info.python_version,
                                        "glibc": list(info.glibc) if info.glibc else None, "arch": info.arch,
                                        "modules": sorted(info.modules),
                                        "debian_packages": [list(p) for p in info.debian_packages]})
    return info
