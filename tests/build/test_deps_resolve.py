"""Dependency resolution with the real pip against the package index, for a target platform."""

from __future__ import annotations

import pytest

from edgepack.build import deps
from edgepack.build.cache import Cache
from edgepack.errors import PackagingError

PLATFORM = deps.PythonPlatform("3.11", "amd64", (2, 36))


def test_resolve_install_and_reuse_the_lock(tmp_path):
    cache = Cache(tmp_path / "cache")
    resolved = deps.resolve(("six==1.16.0",), PLATFORM, cache)
    assert resolved.pins == ("six==1.16.0",)
    assert resolved.hashes[0].startswith("sha256=")
    site = deps.install(resolved, PLATFORM, cache)
    assert (site / "six.py").is_file()
    assert not list(site.rglob("*.pyc"))
    # The lock is reused: a second resolve answers from the cache even if the index would now say otherwise.
    lock_files = list((tmp_path / "cache" / "locks").glob("*.json"))
    assert len(lock_files) == 1
    assert deps.resolve(("six==1.16.0",), PLATFORM, cache) == resolved
    assert deps.install(resolved, PLATFORM, cache) == site


def test_unresolvable_requirement_names_it(tmp_path):
    with pytest.raises(PackagingError) as info:
        deps.resolve(("edgepack-no-such-package-zz9==1.0",), PLATFORM, Cache(tmp_path))
    assert "edgepack-no-such-package-zz9" in info.value.message
    assert "python 3.11" in info.value.message
    assert info.value.hint
