"""The model artifact manifest: canonical bytes, and a parser that refuses what is not a sound edgepack model."""

from __future__ import annotations

import hashlib
import json

import pytest

from edgepack.runtime.model_artifact import ArtifactError, ArtifactFile, ModelManifest, model_content_sha256


def _manifest(**changes) -> ModelManifest:
    files = (ArtifactFile("model.onnx", "sha256:" + hashlib.sha256(b"m").hexdigest(), 1),
             ArtifactFile("vocab/words.txt", "sha256:" + hashlib.sha256(b"w").hexdigest(), 1))
    sha = model_content_sha256([(f.path, f.digest[7:]) for f in files])
    fields = dict(name="clf", version=3, sha256=sha, files=files, format="files", folder="clf",
                  inputs=({"name": "input", "elem_type": "float32", "shape": [None, 4]},))
    return ModelManifest(**{**fields, **changes})


def _tampered(edit) -> bytes:
    data = json.loads(_manifest().to_bytes())
    edit(data)
    return json.dumps(data).encode()


def test_round_trip_and_canonical_bytes():
    one = _manifest()
    assert ModelManifest.parse(one.to_bytes()) == one
    reordered = _manifest(files=tuple(reversed(one.files)))
    assert reordered.to_bytes() == one.to_bytes()  # same model, same digest, whatever the order files came in


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(artifactType="application/vnd.oci.image.config.v1+json"), "not an edgepack model"),
    (lambda d: d["layers"][0]["annotations"].update({"org.opencontainers.image.title": "../../etc/passwd"}),
     "not a plain relative path"),
    (lambda d: d["layers"][0]["annotations"].update({"org.opencontainers.image.title": "/abs"}),
     "not a plain relative path"),
    (lambda d: d["layers"][0].update(digest="md5:00"), "not sha256"),
    (lambda d: d["layers"][1].update(digest=d["layers"][0]["digest"]), "do not add up"),
    (lambda d: d["annotations"].pop("io.edgepack.model.version"), "lack or garble"),
    (lambda d: d.update(layers=[]), "holds no files"),
    (lambda d: d["layers"].append(d["layers"][0]), "same path"),
])
def test_parse_refuses_unsound_manifests(edit, message):
    with pytest.raises(ArtifactError, match=message):
        ModelManifest.parse(_tampered(edit))


def test_parse_refuses_non_json():
    with pytest.raises(ArtifactError, match="not JSON"):
        ModelManifest.parse(b"\xff")
