"""Python dependency layers: resolve requirements with pip on the host for the image's platform, then install.

Side effects: runs ``pip`` as a subprocess (network access to the package index) and writes under the cache.
Nothing runs inside the image, so an arm64 image is resolved on an x86 host by choosing arm64 wheels.

Two cache levels keep rebuilds fast and reproducible:
- the *lock*: requirements + platform -> the resolved set (``name==version`` with wheel hashes), reused until
  ``refresh=True``, so the same inputs install the same packages on every build;
- the *site*: resolved set + platform -> an installed ``site-packages`` tree, from which the layer is made.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgepack.build.cache import Cache
from edgepack.errors import PackagingError

log = logging.getLogger(__name__)

_OLDEST_GLIBC_MINOR = 17
_ARCH = {"amd64": "x86_64", "arm64": "aarch64", "x86_64": "x86_64", "aarch64": "aarch64"}


@dataclass(frozen=True)
class PythonPlatform:
    """The interpreter and C library an image provides, which decide which wheels fit it."""

    python_version: str
    arch: str = "amd64"
    glibc: tuple[int, int] = (2, 36)

    def platform_tags(self) -> tuple[str, ...]:
        """Every manylinux tag the image's glibc accepts, newest first.

        All of them are listed: with only ``manylinux2014`` pip silently picks an old release of packages
        (onnxruntime among them) whose newer wheels carry a newer ``manylinux_2_x`` tag.
        """
        machine = _ARCH.get(self.arch)
        if machine is None:
            raise PackagingError(f"resolving python packages for architecture '{self.arch}': not supported",
                                 hint="Use an amd64 or arm64 base image.")
        major, minor = self.glibc
        tags = [f"manylinux_{major}_{m}_{machine}" for m in range(minor, _OLDEST_GLIBC_MINOR - 1, -1)]
        tags.append(f"manylinux2014_{machine}")
        return tuple(tags)

    def key(self) -> dict:
        """JSON-able identity, used in cache keys."""
        return {"python": self.python_version, "arch": self.arch, "glibc": list(self.glibc)}


@dataclass(frozen=True)
class ResolvedSet:
    """The exact packages pip chose: ``name==version`` pins with the sha256 of each wheel."""

    pins: tuple[str, ...]
    hashes: tuple[str, ...]

    def key(self, platform: PythonPlatform) -> str:
        """Content key of this set on this platform."""
        blob = json.dumps({"pins": self.pins, "hashes": self.hashes, **platform.key()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


def _pip_base(platform: PythonPlatform) -> list[str]:
    args = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
            "--only-binary=:all:", "--implementation", "cp", "--python-version", platform.python_version]
    for tag in platform.platform_tags():
        args += ["--platform", tag]
    return args


def _run_pip(args: list[str], *, what: str) -> None:
    log.debug("running %s", " ".join(args))
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip() and "WARNING" not in ln]
        cause = "; ".join(lines[-4:]) or f"pip exited with {proc.returncode}"
        raise PackagingError(
            f"{what}: {cause}",
            hint="Check the requirement's name and version, and that it publishes wheels for this Python and platform.",
        )


def resolve(requirements: tuple[str, ...], platform: PythonPlatform, cache: Cache, *,
            refresh: bool = False) -> ResolvedSet:
    """Resolve ``requirements`` for ``platform``, reusing the cached lock unless ``refresh``.

    Raises:
        PackagingError: pip could not resolve a requirement (the message quotes pip's reason).
    """
    lock_key = hashlib.sha256(json.dumps({"req": list(requirements), **platform.key()}).encode()).hexdigest()
    cached = None if refresh else cache.read_index("locks", lock_key)
    if cached:
        return ResolvedSet(tuple(cached["pins"]), tuple(cached["hashes"]))
    with tempfile.TemporaryDirectory(prefix="edgepack-resolve-") as tmp:
        report = Path(tmp) / "report.json"
        what = f"resolving python requirements for python {platform.python_version} on linux/{platform.arch}"
        _run_pip(_pip_base(platform) + ["--dry-run", "--ignore-installed", "--quiet", "--target", str(Path(tmp) / "t"),
                                        "--report", str(report), *requirements], what=what)
        data = json.loads(report.read_text())
    items = sorted(data.get("install", []), key=lambda i: i["metadata"]["name"].lower())
    pins = tuple(f"{i['metadata']['name']}=={i['metadata']['version']}" for i in items)
    hashes = tuple(i.get("download_info", {}).get("archive_info", {}).get("hash", "") for i in items)
    cache.write_index("locks", lock_key,
                      {"pins": list(pins), "hashes": list(hashes), "requirements": list(requirements)})
    return ResolvedSet(pins, hashes)


def install(resolved: ResolvedSet, platform: PythonPlatform, cache: Cache) -> Path:
    """Install the resolved set into a cached ``site-packages`` tree and return its path.

    Bytecode is not compiled: ``.pyc`` files embed timestamps and would break reproducible digests.

    Raises:
        PackagingError: pip could not download or install a pinned wheel.
    """
    key = resolved.key(platform)
    final = cache.dir_for("sites", key)
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(dir=final.parent, prefix=".tmp-"))
    try:
        if resolved.pins:
            _run_pip(_pip_base(platform) + ["--no-deps", "--no-compile", "--quiet", "--target", str(staged),
                                            *resolved.pins], what="installing python packages for the image")
        _strip_host_specific(staged)
        return cache.commit_dir("sites", key, staged)
    finally:
        if staged.exists():
            shutil.rmtree(staged, ignore_errors=True)


def _strip_host_specific(site: Path) -> None:
    """Remove what pip writes that differs between hosts or runs (caches, bin scripts with host shebangs)."""
    for pycache in site.rglob("__pycache__"):
        shutil.rmtree(pycache, ignore_errors=True)
    # Console scripts carry the host interpreter's path in their shebang; the image runs modules instead.
    shutil.rmtree(site / "bin", ignore_errors=True)
    for direct_url in site.glob("*.dist-info/direct_url.json"):
        direct_url.unlink()
