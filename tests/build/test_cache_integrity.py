"""A damaged build cache never ships: cached blobs are checked before reuse, bad ones removed and rebuilt, and
output layouts share no inode with the cache."""

from __future__ import annotations

import os

from edgepack.build.cache import Cache
from edgepack.build.image import _build_layer
from edgepack.oci.integrity import file_digest
from edgepack.oci.layer import FileEntry, LayerSpec
from edgepack.oci.layout import write_layout


def _layer(cache: Cache):
    spec = LayerSpec("model", (FileEntry.from_bytes("/app/model.bin", os.urandom(200_000)),))
    return _build_layer("key-1", "model", lambda: spec, cache, 0)


def test_a_flipped_byte_or_a_truncation_is_caught_and_the_layer_rebuilt(tmp_path):
    cache = Cache(tmp_path / "cache")
    spec = LayerSpec("model", (FileEntry.from_bytes("/app/model.bin", os.urandom(200_000)),))
    desc, _ = _build_layer("key-1", "model", lambda: spec, cache, 0)
    path = cache.blob_path(desc.digest)
    data = bytearray(path.read_bytes())
    data[1000] ^= 0xFF
    path.write_bytes(bytes(data))  # same size, other content
    again, _ = _build_layer("key-1", "model", lambda: spec, cache, 0)
    assert again == desc and file_digest(path) == desc.digest  # rebuilt, not reused
    with open(path, "r+b") as f:
        f.truncate(10)
    third, _ = _build_layer("key-1", "model", lambda: spec, cache, 0)
    assert third == desc and path.stat().st_size == desc.size


def test_a_layout_shares_no_inode_with_the_cache(tmp_path):
    cache = Cache(tmp_path / "cache")
    desc, _ = _layer(cache)
    manifest = b"{}"
    write_layout(tmp_path / "out", manifest=manifest, manifest_digest="sha256:" + "1" * 64,
                 blobs=[(desc.digest, cache.blob_path(desc.digest))])
    copied = tmp_path / "out" / "blobs" / "sha256" / desc.digest.split(":")[1]
    assert copied.read_bytes() == cache.blob_path(desc.digest).read_bytes()
    assert copied.stat().st_ino != cache.blob_path(desc.digest).stat().st_ino


def test_temporary_files_a_killed_build_left_are_swept(tmp_path):
    cache = Cache(tmp_path / "cache")
    _layer(cache)
    stale, fresh = cache.blob_dir / ".tmp-stale", cache.blob_dir / ".tmp-fresh"
    stale.write_bytes(b"x" * 100)
    fresh.write_bytes(b"y")
    os.utime(stale, (0, 0))
    Cache(tmp_path / "cache")
    assert not stale.exists() and fresh.exists()  # a build running now may still own the fresh one
