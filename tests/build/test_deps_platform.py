"""Wheel platform tags follow the base image's glibc and architecture."""

from __future__ import annotations

import pytest

from edgepack.build.deps import PythonPlatform
from edgepack.errors import PackagingError


def test_tags_cover_every_glibc_minor_down_to_2_17_and_manylinux2014():
    tags = PythonPlatform("3.11", "amd64", (2, 36)).platform_tags()
    assert tags[0] == "manylinux_2_36_x86_64"
    assert "manylinux_2_28_x86_64" in tags and "manylinux_2_17_x86_64" in tags
    assert tags[-1] == "manylinux2014_x86_64"
    assert len(tags) == 36 - 17 + 1 + 1


def test_arm64_maps_to_aarch64():
    assert PythonPlatform("3.11", "arm64", (2, 31)).platform_tags()[0] == "manylinux_2_31_aarch64"


def test_unknown_architecture_is_a_packaging_error():
    with pytest.raises(PackagingError, match="architecture 's390x'"):
        PythonPlatform("3.11", "s390x", (2, 36)).platform_tags()
