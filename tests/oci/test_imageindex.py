"""Multi-platform images: platform names, the index's canonical bytes, and layouts holding one."""

from __future__ import annotations

import json

import pytest

from edgepack.errors import EdgepackError
from edgepack.oci.descriptor import OCI_INDEX, sha256_digest
from edgepack.oci.imageindex import image_index, parse_platforms
from edgepack.oci.layout import read_layout, read_layout_index, write_layout

from tests.oci.test_layout import _image


def test_platform_lists_are_checked_and_keep_their_order():
    assert parse_platforms("linux/arm64, linux/amd64,linux/arm64") == ("linux/arm64", "linux/amd64")
    with pytest.raises(ValueError, match="'linux/s390x' is not one edgepack builds for"):
        parse_platforms("linux/amd64,linux/s390x")
    with pytest.raises(ValueError, match="no platform"):
        parse_platforms(" , ")


def test_the_index_names_each_manifest_with_its_platform_and_is_canonical():
    index = image_index([("linux/amd64", b"{}"), ("linux/arm64", b'{"a":1}')])
    data = json.loads(index)
    assert data["mediaType"] == OCI_INDEX
    assert [(m["digest"], m["size"], m["platform"]) for m in data["manifests"]] == [
        (sha256_digest(b"{}"), 2, {"architecture": "amd64", "os": "linux"}),
        (sha256_digest(b'{"a":1}'), 7, {"architecture": "arm64", "os": "linux"})]
    assert index == image_index([("linux/amd64", b"{}"), ("linux/arm64", b'{"a":1}')])


def test_a_layout_with_an_index_reads_back_per_platform(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    amd, amd_blobs = _image(tmp_path / "one")
    arm, arm_blobs = _image(tmp_path / "two")
    arm = arm.replace(b'"schemaVersion": 2', b'"schemaVersion": 2 ')  # another manifest, the same blobs
    index = image_index([("linux/amd64", amd), ("linux/arm64", arm)])
    out = tmp_path / "layout"
    write_layout(out, manifest=index, manifest_digest=sha256_digest(index), blobs=amd_blobs + arm_blobs,
                 ref_name="1", media_type=OCI_INDEX, manifests=[amd, arm])
    read = read_layout_index(out)
    assert read is not None and read.manifest_digest == sha256_digest(index) and read.ref_name == "1"
    assert {p: i.manifest_digest for p, i in read.images.items()} == {
        "linux/amd64": sha256_digest(amd), "linux/arm64": sha256_digest(arm)}
    assert read_layout(out, "linux/arm64").manifest == arm
    assert read_layout(out).manifest == amd  # this machine's platform
    with pytest.raises(EdgepackError, match="no image for linux/riscv64"):
        read_layout(out, "linux/riscv64")


def test_a_single_image_layout_has_no_index(tmp_path):
    manifest, blobs = _image(tmp_path)
    write_layout(tmp_path / "l", manifest=manifest, manifest_digest=sha256_digest(manifest), blobs=blobs)
    assert read_layout_index(tmp_path / "l") is None
