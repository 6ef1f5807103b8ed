"""The build pipeline: pull the plan's base, learn its platform, resolve dependencies, assemble the image.

Side effects: registry reads (the base image), pip, and cache writes, all through the injected client factory
and cache. ``build`` is what ``edgepack package`` runs between planning and writing or pushing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edgepack.build import deps
from edgepack.build.baseinfo import inspect_base
from edgepack.build.cache import Cache
from edgepack.build.image import BuiltImage, PipMaterializer, build_image
from edgepack.errors import PackagingError
from edgepack.oci.layer import LayerSpec, entries_from_dir
from edgepack.oci.plan import ImagePlan, PipLayer
from edgepack.oci.ref import ImageRef
from edgepack.registry import pull_image

log = logging.getLogger(__name__)

ClientFactory = Callable[[ImageRef], Any]


@dataclass(frozen=True)
class BuildOptions:
    """Knobs of a build: the fixed timestamp, an interpreter override and whether to re-resolve dependencies."""

    mtime: int = 0
    python_version: str | None = None
    refresh_deps: bool = False


@dataclass(frozen=True)
class BuildResult:
    """A built image with the base it was built on and the platform its dependencies were chosen for."""

    image: BuiltImage
    base: Any
    platform: deps.PythonPlatform
    # The installed dependency trees and the base's own modules: what the image can import.
    sites: tuple[Path, ...] = ()
    base_modules: frozenset[str] = frozenset()
    # What went into the image, for its SBOM and provenance: each pip layer's resolved set, the base's
    # Debian packages.
    resolved: tuple[deps.ResolvedSet, ...] = ()
    debian_packages: tuple[tuple[str, str, str], ...] = ()


def pull_base(plan: ImagePlan, *, cache: Cache, client_for: ClientFactory) -> Any:
    """Pull the plan's base image into the cache (blobs already cached are not fetched again)."""
    ref = ImageRef.parse(plan.base_image)
    log.info("pulling base image %s", ref)
    return pull_image(client_for(ref), ref, cache_dir=cache.root, platform=plan.platform)


def base_platform(base: Any, *, cache: Cache, python_version: str | None) -> deps.PythonPlatform:
    """The Python and glibc the base provides, read from its layers.

    Raises:
        PackagingError: the base has no python3 (and none was named) or is not a glibc system.
    """
    info = _base_info(base, cache)
    version = python_version or info.python_version
    if version is None:
        raise PackagingError(f"inspecting base image '{base.ref}': no python3 interpreter found in its layers",
                             hint="Use a base image with Python 3 installed, or pass --python-version.")
    if info.glibc is None:
        raise PackagingError(f"inspecting base image '{base.ref}': no glibc found (musl-based images cannot use "
                             "manylinux wheels)", hint="Use a Debian- or Ubuntu-based base image.")
    return deps.PythonPlatform(python_version=version, arch=info.arch, glibc=info.glibc)


def _base_info(base: Any, cache: Cache) -> Any:
    return inspect_base(base.config, [base.blob_path(d.digest) for d in base.layers], cache=cache,
                        manifest_digest=base.ref.digest)


def pip_materializer(platform: deps.PythonPlatform, cache: Cache, *, refresh: bool,
                     sites: list[Path] | None = None,
                     resolved_sets: list[deps.ResolvedSet] | None = None) -> PipMaterializer:
    """Turn pip layers into (content key, spec factory): resolved and installed once per resolved set (each
    installed tree is appended to ``sites``, each resolved set to ``resolved_sets``)."""

    def materialize(layer: PipLayer) -> tuple[str, Callable[[], LayerSpec]]:
        sources = deps.Sources(layer.index_urls, layer.find_links, conda_packages=layer.conda_packages)
        resolved = deps.resolve(layer.requirements, platform, cache, refresh=refresh, sources=sources)
        log.info("dependencies: %s", ", ".join(resolved.pins))
        site = deps.install(resolved, platform, cache, sources=sources)
        if sites is not None:
            sites.append(site)
        if resolved_sets is not None:
            resolved_sets.append(resolved)
        key = "pip-" + resolved.key(platform) + "-" + layer.dest.replace("/", "_")
        return key, lambda: LayerSpec(layer.name, entries_from_dir(site, layer.dest), comment=layer.comment)

    return materialize


def build(plan: ImagePlan, *, cache: Cache, client_for: ClientFactory, options: BuildOptions) -> BuildResult:
    """Build ``plan`` without a daemon; every blob of the result is in ``cache``."""
    base = pull_base(plan, cache=cache, client_for=client_for)
    platform = base_platform(base, cache=cache, python_version=options.python_version)
    wanted = plan.platform.partition("/")[2]
    if platform.arch != wanted:
        raise PackagingError(f"building for {plan.platform}: the base image '{base.ref}' is for "
                             f"linux/{platform.arch} only",
                             hint="Use a multi-platform base image (an index listing that platform), or leave "
                                  f"{plan.platform} out of --platform.")
    sites: list[Path] = []
    resolved: list[deps.ResolvedSet] = []
    image = build_image(plan, base=base, cache=cache, mtime=options.mtime,
                        materialize_pip=pip_materializer(platform, cache, refresh=options.refresh_deps, sites=sites,
                                                         resolved_sets=resolved))
    info = _base_info(base, cache)
    return BuildResult(image=image, base=base, platform=platform, sites=tuple(sites), base_modules=info.modules,
                       resolved=tuple(resolved), debian_packages=info.debian_packages)


def layer_specs(plan: ImagePlan, result: BuildResult, cache: Cache) -> list[LayerSpec]:
    """Every layer of ``plan`` as a file list, pip layers included (for the Dockerfile context)."""
    materialize = pip_materializer(result.platform, cache, refresh=False)
    return [layer if isinstance(layer, LayerSpec) else materialize(layer)[1]() for layer in plan.layers]
