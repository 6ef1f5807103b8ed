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
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING
from pathlib import Path
from string import Template

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import Version

from edgepack.build import index
from edgepack.build.cache import Cache
from edgepack import lazy
from edgepack.errors import PackagingError

if TYPE_CHECKING:
    import httpx
else:
    httpx = lazy.module("httpx")

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


@dataclass(frozen=True)
class Sources:
    """Where packages come from besides the configured index: extra indexes, find-links URLs, and the cache's
    wheelhouse of wheels built on this host from pure-Python source distributions."""

    index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    wheelhouse: Path | None = None
    conda_packages: tuple[str, ...] = field(default=())

    def args(self) -> list[str]:
        """pip options; ``${VAR}`` parts are filled from the environment here and only here.

        Raises:
            PackagingError: a variable an index URL names is not set.
        """
        out: list[str] = []
        for flag, urls in (("--extra-index-url", self.index_urls), ("--find-links", self.find_links)):
            for url in urls:
                try:
                    out += [flag, Template(url).substitute(os.environ)]
                except (KeyError, ValueError) as exc:
                    raise PackagingError(f"resolving python requirements: the index URL '{url}' names the "
                                         f"variable {exc}, which is not set",
                                         hint="Export it (credentials for a private index stay in the "
                                              "environment, never in a file).") from exc
        if self.wheelhouse is not None and self.wheelhouse.is_dir():
            out += ["--find-links", str(self.wheelhouse)]
        return out

    def key(self) -> list[str]:
        """What of this goes into cache keys (the URLs as written, never with credentials filled in)."""
        return [*self.index_urls, *self.find_links]


class PipFailed(Exception):
    """pip exited non-zero; ``lines`` are its error lines."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("; ".join(lines))
        self.lines = lines


_REDACT = re.compile(r"(://)[^/@\s]+@")


def _with_wheelhouse(sources: Sources | None, cache: Cache) -> Sources:
    """``sources`` with the cache's wheelhouse (the wheels built on this host from source distributions)."""
    return replace(sources or Sources(), wheelhouse=cache.root / "wheelhouse")


def _pip_base(platform: PythonPlatform, sources: Sources | None = None) -> list[str]:
    args = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
            "--only-binary=:all:", "--implementation", "cp", "--python-version", platform.python_version]
    for tag in platform.platform_tags():
        args += ["--platform", tag]
    return args + (sources.args() if sources else [])


def _pip(args: list[str]) -> None:
    log.debug("running %s", _REDACT.sub(r"\1***@", " ".join(args)))
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        text = _REDACT.sub(r"\1***@", proc.stderr or proc.stdout)
        lines = [ln for ln in text.splitlines() if ln.strip() and "WARNING" not in ln]
        raise PipFailed(lines or [f"pip exited with {proc.returncode}"])


def _run_pip(args: list[str], *, what: str) -> None:
    try:
        _pip(args)
    except PipFailed as exc:
        raise PackagingError(
            f"{what}: {'; '.join(exc.lines[-4:])}",
            hint="Check the requirement's name and version, and that it publishes wheels for this Python and platform.",
        ) from None


def _dry_run(requirements: tuple[str, ...], platform: PythonPlatform, sources: Sources) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="edgepack-resolve-") as tmp:
        report = Path(tmp) / "report.json"
        _pip(_pip_base(platform, sources) + ["--dry-run", "--ignore-installed", "--quiet", "--target",
                                             str(Path(tmp) / "t"), "--report", str(report), *requirements])
        return json.loads(report.read_text()).get("install", [])


def _missing(lines: list[str]) -> Requirement | None:
    """The requirement pip found no distribution for, from its error lines."""
    for line in lines:
        match = re.search(r"(?:No matching distribution found for|satisfies the requirement) (\S+)", line)
        if match:
            try:
                return Requirement(match.group(1))
            except InvalidRequirement:
                return None
    return None


def _where(platform: PythonPlatform) -> str:
    return f"python {platform.python_version} on linux/{platform.arch}"


def _build_wheel(requirement: Requirement, version: Version, platform: PythonPlatform, wheelhouse: Path) -> None:
    """Build the source distribution of ``requirement`` at ``version`` into a wheel on this host.

    Raises:
        PackagingError: it does not build, or it builds a wheel for this host only (it needs compiling).
    """
    name = f"{requirement.name} {version}"
    log.warning("%s publishes no wheel; building it from its source distribution on this host", name)
    with tempfile.TemporaryDirectory(prefix="edgepack-wheel-") as tmp:
        try:
            _pip([sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-input", "--no-deps",
                  "--no-binary", requirement.name, "-w", tmp, f"{requirement.name}=={version}"])
        except PipFailed as exc:
            raise PackagingError(f"building {name} from source for the image: {'; '.join(exc.lines[-3:])}",
                                 hint=f"Choose a version of {requirement.name} that publishes wheels, or add a "
                                      "wheel for it to a --find-links location.") from None
        wheels = list(Path(tmp).glob("*.whl"))
        if not wheels or not all(w.name.endswith("-none-any.whl") for w in wheels):
            raise PackagingError(
                f"resolving python requirements for {_where(platform)}: {name} has no wheel for that platform, "
                "and its source distribution needs compiling, which edgepack does not do for another platform "
                "(nothing runs inside the image at build time)",
                hint=f"Choose a version of {requirement.name} that publishes wheels for {_where(platform)}, or "
                     "build a wheel for it and serve it from an index or a --find-links location.")
        wheelhouse.mkdir(parents=True, exist_ok=True)
        for wheel in wheels:
            shutil.copyfile(wheel, wheelhouse / wheel.name)


def _explain(requirement: Requirement, platform: PythonPlatform, sources: Sources, lines: list[str],
             wheelhouse: Path) -> None:
    """Build a pure-Python sdist pip could not use (and return, to resolve again), or raise what went wrong.

    Raises:
        PackagingError: the project is not on the index, or no release of it fits the image's Python.
    """
    name = requirement.name
    try:
        found = index.releases(name, platform)
    except httpx.HTTPError:
        found = {}
    where = _where(platform)
    if found is None:
        conda = name.lower() in sources.conda_packages
        raise PackagingError(
            f"resolving python requirements for {where}: '{name}' is not on the package index"
            + (" (it comes from the conda file: a conda-only package)" if conda else ""),
            hint="Install it in the base image, or replace it with the package index's equivalent."
            if conda else "Check the requirement's name.")
    wanted = [r for r in found.values() if requirement.specifier.contains(r.version, prereleases=True)]
    compiled = any(r.binary for r in found.values())  # platform wheels elsewhere: its sdist needs compiling
    buildable = [r for r in wanted if not r.fits and r.sdist and r.python_ok]
    if wanted and not any(r.fits for r in wanted) and buildable and not compiled:
        _build_wheel(requirement, buildable[-1].version, platform, wheelhouse)
        return
    fitting = [v for v, r in found.items() if r.fits and not v.is_prerelease]
    pinned = next((Version(s.version.rstrip(".*")) for s in requirement.specifier
                   if s.operator in ("==", "===", "~=")), None)
    close = index.nearest(pinned, fitting)
    if wanted and not any(r.fits for r in wanted):
        raise PackagingError(
            f"resolving python requirements for {where}: no release of '{requirement}' can be installed there "
            "(none publishes a wheel for it, and edgepack compiles nothing for an image; or its Requires-Python "
            "excludes it)"
            + (f"; the nearest release that can is {name}=={close}" if close else ""),
            hint=(f"Change the pin to {name}=={close}" if close else f"Remove '{name}'")
            + " (the conda file's python= pin does not change the image's Python: the base image's does).")
    raise PackagingError(f"resolving python requirements for {where}: {'; '.join(lines[-4:])}",
                         hint="Check the requirements' versions: pip found no set that fits together.")


def _unfit_pin(requirements: tuple[str, ...], platform: PythonPlatform) -> Requirement | None:
    """The first exactly pinned requirement no release of which fits the platform (pip reports such a pin as a
    conflict when another requirement names the same project)."""
    for line in requirements:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if not any(s.operator in ("==", "===") for s in req.specifier):
            continue
        try:
            found = index.releases(req.name, platform)
        except httpx.HTTPError:
            continue
        if found and not any(r.fits for v, r in found.items() if req.specifier.contains(v, prereleases=True)):
            return req
    return None


def _backtracked(requirements: tuple[str, ...], items: list[dict], platform: PythonPlatform, *,
                 skip: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """Top-level requirements pip resolved to a release far older (another major or minor) than the newest one
    they allow, with why when the index tells: no wheel for the platform, or a dependency that has none."""
    chosen = {i["metadata"]["name"].lower().replace("_", "-"): Version(i["metadata"]["version"]) for i in items}
    out = []
    for line in requirements:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if any(s.operator in ("==", "===") for s in req.specifier) or req.name.lower() in skip:
            continue
        picked = chosen.get(req.name.lower().replace("_", "-"))
        try:
            found = index.releases(req.name, platform) or {}
        except httpx.HTTPError:
            continue
        newest = max((v for v, r in found.items() if not v.is_prerelease and r.python_ok
                      and req.specifier.contains(v)), default=None)
        if picked is None or newest is None or newest.release[:2] <= picked.release[:2]:
            continue
        year = (found[picked].uploaded or "")[:4] if picked in found else ""
        why = (f"{newest} publishes no wheel for it" if not found[newest].fits else
               f"{newest} or one of its dependencies cannot be installed there")
        out.append(f"{req.name} resolved to {picked}{f' (from {year})' if year else ''} although {newest} is the "
                   f"newest: {why} ({_where(platform)}); pin the version you want to see what stands in the way")
    return out


NUMPY_2_RELEASED = "2024-06-16"


def _built_for_numpy_1(items: list[dict], platform: PythonPlatform) -> list[str]:
    """Compiled packages of the set that need NumPy but whose wheel predates NumPy 2.0, when NumPy 2 was chosen:
    their extensions fail to load under NumPy 2 ("numpy.dtype size changed"), and their metadata does not say
    so, as conda's does."""
    chosen = {i["metadata"]["name"].lower(): i for i in items}
    numpy = chosen.get("numpy")
    if numpy is None or Version(numpy["metadata"]["version"]).major < 2:
        return []
    stale = []
    for name, item in chosen.items():
        needs = [r for r in item["metadata"].get("requires_dist") or [] if re.match(r"numpy\b", r, re.I)]
        url = item.get("download_info", {}).get("url", "")
        if name == "numpy" or not needs or url.endswith("-none-any.whl"):
            continue
        try:
            found = index.releases(item["metadata"]["name"], platform) or {}
        except httpx.HTTPError:
            continue
        release = found.get(Version(item["metadata"]["version"]))
        if release is not None and release.uploaded and release.uploaded < NUMPY_2_RELEASED:
            stale.append(f"{item['metadata']['name']} {item['metadata']['version']}")
    return stale


def resolve(requirements: tuple[str, ...], platform: PythonPlatform, cache: Cache, *,
            refresh: bool = False, sources: Sources | None = None) -> ResolvedSet:
    """Resolve ``requirements`` for ``platform``, reusing the cached lock unless ``refresh``.

    Pure-Python source distributions pip cannot use for another platform are built into wheels on this host
    (into the cache's wheelhouse) and resolution runs again; a release far older than the newest is reported.

    Raises:
        PackagingError: a requirement cannot be satisfied for the image's Python and platform (naming it, the
            platform, and the nearest release that would work), or a dependency needs compiling.
    """
    sources = _with_wheelhouse(sources, cache)
    wheelhouse = cache.root / "wheelhouse"
    lock_key = hashlib.sha256(json.dumps({"req": list(requirements), "sources": sources.key(),
                                          **platform.key()}).encode()).hexdigest()
    cached = None if refresh else cache.read_index("locks", lock_key)
    if cached:
        return ResolvedSet(tuple(cached["pins"]), tuple(cached["hashes"]))
    asked = requirements
    extra: tuple[str, ...] = ()  # what edgepack adds (numpy<2 for packages built before NumPy 2)
    for _ in range(8):  # each round builds at most one source distribution
        requirements = (*asked, *extra)
        try:
            items = _dry_run(requirements, platform, sources)
        except PipFailed as exc:
            missing = _missing(exc.lines) or _unfit_pin(requirements, platform)
            if missing is None:
                raise PackagingError(f"resolving python requirements for {_where(platform)}: "
                                     f"{'; '.join(exc.lines[-4:])}",
                                     hint="Check the requirements' names and versions.") from None
            _explain(missing, platform, sources, exc.lines, wheelhouse)
            continue
        stale = _built_for_numpy_1(items, platform)
        if stale and "numpy<2" not in requirements:
            log.warning("%s %s compiled against NumPy 1 (released before NumPy 2.0) and cannot load with NumPy "
                        "2: resolving again with numpy<2", ", ".join(stale), "is" if len(stale) == 1 else "are")
            extra = ("numpy<2",)
            continue
        break
    else:
        raise PackagingError(f"resolving python requirements for {_where(platform)}: too many rounds",
                             hint="Pin versions that publish wheels.")
    for warning in _backtracked(asked, items, platform, skip={"numpy"} if extra else set()):
        log.warning("%s", warning)
    items = sorted(items, key=lambda i: i["metadata"]["name"].lower())
    pins = tuple(f"{i['metadata']['name']}=={i['metadata']['version']}" for i in items)
    hashes = tuple(i.get("download_info", {}).get("archive_info", {}).get("hash", "") for i in items)
    cache.write_index("locks", lock_key,
                      {"pins": list(pins), "hashes": list(hashes), "requirements": list(requirements)})
    return ResolvedSet(pins, hashes)


def install(resolved: ResolvedSet, platform: PythonPlatform, cache: Cache, *,
            sources: Sources | None = None) -> Path:
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
            args = ["--no-deps", "--no-compile", "--quiet", "--target", str(staged), *resolved.pins]
            _run_pip(_pip_base(platform, _with_wheelhouse(sources, cache)) + args,
                     what="installing python packages for the image")
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
