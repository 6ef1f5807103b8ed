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


def test_a_pin_no_release_for_the_image_python_satisfies_names_the_nearest_that_would(tmp_path):
    # numpy 1.19.3 has no wheel for Python 3.11 (its wheels stop at 3.9); 1.23.2 is the first with cp311 wheels
    with pytest.raises(PackagingError) as info:
        deps.resolve(("numpy==1.19.3",), PLATFORM, Cache(tmp_path))
    message = info.value.message
    assert "python 3.11 on linux/amd64" in message and "'numpy==1.19.3'" in message
    assert "the nearest release that can is numpy==1.23.2" in message
    assert "numpy==1.23.2" in info.value.hint


def test_a_conda_only_package_is_named_as_such(tmp_path):
    sources = deps.Sources(conda_packages=("edgepack-no-such-conda-pkg",))
    with pytest.raises(PackagingError, match="not on the package index \\(it comes from the conda file: a "
                                             "conda-only package\\)"):
        deps.resolve(("edgepack-no-such-conda-pkg",), PLATFORM, Cache(tmp_path), sources=sources)


def test_a_pure_python_sdist_is_built_into_a_wheel_for_another_platform(tmp_path):
    # fusepy publishes only a source distribution (azureml-dataprep[fuse] needs it); pure Python, so it is built
    # on this host, also for an arm64 image
    cache = Cache(tmp_path)
    arm = deps.PythonPlatform("3.11", "arm64", (2, 36))
    resolved = deps.resolve(("fusepy==3.0.1",), arm, cache)
    assert resolved.pins == ("fusepy==3.0.1",)
    assert [w.name for w in (tmp_path / "wheelhouse").iterdir()] == ["fusepy-3.0.1-py3-none-any.whl"]
    site = deps.install(resolved, arm, cache)
    assert (site / "fuse.py").is_file()


def test_an_sdist_that_needs_compiling_is_refused_for_another_platform(tmp_path):
    # netifaces 0.11.0 has C code and no cp311 wheel
    with pytest.raises(PackagingError) as info:
        deps.resolve(("netifaces==0.11.0",), deps.PythonPlatform("3.11", "arm64", (2, 36)), Cache(tmp_path))
    assert "linux/arm64" in info.value.message and "netifaces" in info.value.message
    assert "compil" in info.value.message


def test_an_old_release_chosen_by_backtracking_is_reported(tmp_path, caplog):
    # on a glibc 2.17 system the newest onnxruntime releases have no wheel, so pip quietly takes an old one
    caplog.set_level("WARNING")
    resolved = deps.resolve(("onnxruntime<=1.20.1",), deps.PythonPlatform("3.11", "amd64", (2, 17)),
                            Cache(tmp_path))
    picked = [p for p in resolved.pins if p.startswith("onnxruntime==")][0]
    assert any(r.message.startswith(f"onnxruntime resolved to {picked.split('==')[1]}") for r in caplog.records)


def test_a_pin_that_pip_reports_as_a_conflict_is_explained(tmp_path):
    # "numpy" and "numpy==1.23" together: pip says the two conflict; the cause is the pin's missing wheels
    with pytest.raises(PackagingError) as info:
        deps.resolve(("numpy", "numpy==1.23"), PLATFORM, Cache(tmp_path))
    assert "no release of 'numpy==1.23' can be installed there" in info.value.message
    assert "the nearest release that can is numpy==1.23.2" in info.value.message
