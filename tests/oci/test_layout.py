"""OCI image layout: written atomically, read back, and never written over a foreign directory."""

from __future__ import annotations

import json

import pytest

from edgepack.errors import EdgepackError
from edgepack.oci.descriptor import OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, sha256_digest
from edgepack.oci.layout import read_layout, write_layout


def _image(tmp_path):
    config = b'{"architecture":"amd64","os":"linux"}'
    layer = b"not really gzip but a blob"
    paths = []
    for data in (config, layer):
        p = tmp_path / sha256_digest(data).split(":")[1]
        p.write_bytes(data)
        paths.append((sha256_digest(data), p))
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": OCI_CONFIG, "digest": paths[0][0], "size": len(config)},
                           "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": paths[1][0], "size": len(layer)}]},
                          sort_keys=True).encode()
    return manifest, paths


def test_write_then_read_round_trip(tmp_path):
    manifest, blobs = _image(tmp_path)
    out = tmp_path / "layout"
    write_layout(out, manifest=manifest, manifest_digest=sha256_digest(manifest), blobs=blobs, ref_name="1.0")
    image = read_layout(out)
    assert image.manifest == manifest
    assert image.manifest_digest == sha256_digest(manifest)
    assert image.ref_name == "1.0"
    assert [d.digest for d in image.blobs] == [d for d, _ in blobs]
    assert json.loads((out / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    # Writing again replaces the layout and leaves no temporary siblings behind.
    write_layout(out, manifest=manifest, manifest_digest=sha256_digest(manifest), blobs=blobs)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_refuses_to_overwrite_a_directory_that_is_not_a_layout(tmp_path):
    manifest, blobs = _image(tmp_path)
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(EdgepackError, match="holds other files") as info:
        write_layout(out, manifest=manifest, manifest_digest=sha256_digest(manifest), blobs=blobs)
    assert info.value.hint
    assert (out / "notes.txt").read_text() == "keep me"


def test_read_reports_missing_blobs(tmp_path):
    manifest, blobs = _image(tmp_path)
    out = tmp_path / "layout"
    write_layout(out, manifest=manifest, manifest_digest=sha256_digest(manifest), blobs=blobs)
    (out / "blobs" / "sha256" / blobs[1][0].split(":")[1]).unlink()
    with pytest.raises(EdgepackError, match="missing blobs"):
        read_layout(out)
