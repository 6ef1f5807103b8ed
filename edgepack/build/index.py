"""What the package index publishes for a project, read for the image's platform: which releases have a wheel
that fits, which only a source distribution, and what Requires-Python excludes.

Side effects: HTTPS requests to the configured index (its JSON simple API, PEP 691), TLS verified with pip's
configured CA bundle. Used to explain what pip would only say as "no matching distribution", and to catch
pip picking an ancient release because a newer one cannot be installed here.
"""

from __future__ import annotations

import functools
import os
import re
import ssl
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidSdistFilename, InvalidWheelFilename, parse_sdist_filename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from edgepack import lazy

if TYPE_CHECKING:
    import httpx

    from edgepack.build.deps import PythonPlatform
else:
    httpx = lazy.module("httpx")

PUBLIC_INDEX = "https://pypi.org/simple"
_ACCEPT = "application/vnd.pypi.simple.v1+json"


@dataclass(frozen=True)
class Release:
    """One version of a project: whether a wheel fits the platform, whether an sdist exists, and when."""

    version: Version
    fits: bool
    sdist: bool
    pure_wheel: bool
    python_ok: bool
    uploaded: str = ""
    # Some wheel of this release is for a specific platform: the project has compiled code.
    binary: bool = False


@functools.lru_cache(maxsize=1)
def _pip_config() -> dict[str, str]:
    proc = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    out = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition("=")
        out[key.split(".")[-1]] = value.strip().strip("'\"")
    return out


def index_url() -> str:
    """The index pip is configured with (``PIP_INDEX_URL``, pip's config, else the public index)."""
    return (os.environ.get("PIP_INDEX_URL") or _pip_config().get("index-url") or PUBLIC_INDEX).rstrip("/")


@functools.lru_cache(maxsize=1)
def _verify() -> ssl.SSLContext:
    cert = os.environ.get("PIP_CERT") or _pip_config().get("cert")
    return ssl.create_default_context(cafile=cert if cert and os.path.exists(cert) else None)


def supported_tags(platform: "PythonPlatform") -> frozenset[Tag]:
    """Every wheel tag the image's CPython and glibc accept."""
    major, minor = (int(x) for x in platform.python_version.split(".")[:2])
    plats = list(platform.platform_tags())
    return frozenset([*cpython_tags((major, minor), platforms=plats),
                      *compatible_tags((major, minor), interpreter=f"cp{major}{minor}", platforms=plats)])


def releases(name: str, platform: "PythonPlatform", *, url: str | None = None) -> dict[Version, Release] | None:
    """Every release of ``name`` on the index, newest last; None when the index has no such project. Read once
    per process for each project, platform and index (a resolution asks about a project from several checks);
    treat the answer as read-only.

    Raises:
        httpx.HTTPError: the index could not be read (not remembered: the next call asks again).
    """
    return _releases(re.sub(r"[-_.]+", "-", name).lower(), platform, url or index_url())


@functools.lru_cache(maxsize=512)
def _releases(name: str, platform: "PythonPlatform", url: str) -> dict[Version, Release] | None:
    response = httpx.get(f"{url}/{name}/", headers={"Accept": _ACCEPT}, verify=_verify(),
                         follow_redirects=True, timeout=30)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    tags = supported_tags(platform)
    python = Version(platform.python_version)
    found: dict[Version, dict] = {}
    for item in response.json().get("files", []):
        if item.get("yanked"):
            continue
        filename = item["filename"]
        try:
            if filename.endswith(".whl"):
                _, version, _, file_tags = parse_wheel_filename(filename)
                kind = "wheel"
            else:
                _, version = parse_sdist_filename(filename)
                kind, file_tags = "sdist", frozenset()
        except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
            continue
        entry = found.setdefault(version, {"fits": False, "sdist": False, "pure": False, "python_ok": True,
                                           "uploaded": item.get("upload-time", ""), "binary": False})
        if kind == "wheel" and any(t.platform != "any" for t in file_tags):
            entry["binary"] = True
        try:
            if item.get("requires-python") and python not in SpecifierSet(item["requires-python"]):
                entry["python_ok"] = False
                continue
        except InvalidSpecifier:
            pass
        if kind == "sdist":
            entry["sdist"] = True
        elif tags & file_tags:
            entry["fits"] = True
            entry["pure"] = entry["pure"] or all(t.platform == "any" for t in file_tags)
    return {v: Release(v, e["fits"], e["sdist"], e["pure"], e["python_ok"], e["uploaded"], e["binary"])
            for v, e in sorted(found.items())}


def nearest(wanted: Version | None, candidates: list[Version]) -> Version | None:
    """The candidate closest to ``wanted``: the oldest at or above it, else the newest below it."""
    if not candidates:
        return None
    if wanted is None:
        return candidates[-1]
    above = [v for v in candidates if v >= wanted]
    return above[0] if above else candidates[-1]
