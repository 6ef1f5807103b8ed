"""Wheel platform tags follow the base image's glibc and architecture."""

from __future__ import annotations

import pytest

from edgepack.build import deps
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


def test_index_urls_get_their_credentials_from_the_environment_only_when_used(monkeypatch, tmp_path):
    sources = deps.Sources(index_urls=("https://${FEED_USER}:${FEED_TOKEN}@pkgs.example.invalid/simple",),
                           find_links=("https://download.example.invalid/whl",))
    assert sources.key() == ["https://${FEED_USER}:${FEED_TOKEN}@pkgs.example.invalid/simple",
                             "https://download.example.invalid/whl"]
    with pytest.raises(PackagingError, match="names the variable 'FEED_USER', which is not set"):
        sources.args()
    monkeypatch.setenv("FEED_USER", "me")
    monkeypatch.setenv("FEED_TOKEN", "s3cret")
    assert sources.args() == ["--extra-index-url", "https://me:s3cret@pkgs.example.invalid/simple",
                              "--find-links", "https://download.example.invalid/whl"]
