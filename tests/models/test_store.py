"""The local model store: versions, digests, ONNX inspection, refusals and copies out."""

from __future__ import annotations

import pytest

from edgepack.errors import InvalidModel, ModelError, ModelNotFound
from edgepack.models.store import LocalModelStore, parse_model_ref
from tests.project import make_model


@pytest.fixture
def store(tmp_path):
    return LocalModelStore(tmp_path / "store")


def test_versions_increment_and_metadata_is_kept(store, tmp_path):
    model = make_model(tmp_path / "a" / "model.onnx", seed=1)
    one = store.register("lin", model, tags={"k": "v"}, description="first")
    two = store.register("lin", model)
    assert (one.version, two.version) == (1, 2)
    assert one.sha256 == two.sha256
    got = store.get("lin", 1)
    assert got.tags == {"k": "v"} and got.description == "first" and got.format == "onnx"
    assert [(t.name, t.elem_type, t.shape) for t in got.inputs] == [("input", "float32", ("batch", 4))]
    assert [t.name for t in got.outputs] == ["output"]
    assert store.get("lin").version == 2
    assert [m.ref for m in store.list()] == ["lin:1", "lin:2"]
    assert store.verify(got)


def test_digest_is_about_content_not_location(store, tmp_path):
    a = make_model(tmp_path / "a" / "model.onnx", seed=3)
    b = tmp_path / "elsewhere" / "model.onnx"
    b.parent.mkdir()
    b.write_bytes(a.read_bytes())
    assert store.register("x", a).sha256 == store.register("y", b).sha256
    assert store.register("z", make_model(tmp_path / "c" / "model.onnx", seed=4)).sha256 != store.get("x").sha256


def test_folder_of_plain_files(store, tmp_path):
    folder = tmp_path / "sk"
    (folder / "sub").mkdir(parents=True)
    (folder / "model.pkl").write_bytes(b"pickle")
    (folder / "sub" / "vocab.txt").write_text("a\nb\n")
    art = store.register("sk", folder)
    assert art.format == "files"
    assert [f.path for f in art.files] == ["model.pkl", "sub/vocab.txt"]


def test_refusals(store, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x01\x02 not onnx")
    with pytest.raises(InvalidModel, match="checking onnx model 'bad.onnx'"):
        store.register("bad", bad)
    with pytest.raises(ModelError, match="does not exist") as info:
        store.register("m", tmp_path / "missing.onnx")
    assert info.value.hint
    folder = tmp_path / "linked"
    folder.mkdir()
    (folder / "escape").symlink_to("/etc/passwd")
    with pytest.raises(InvalidModel, match="symbolic link"):
        store.register("m", folder)
    with pytest.raises(InvalidModel, match="symbolic links are not followed"):
        store.register("m", folder / "escape")
    assert store.list() == []


def test_not_found_lists_versions_and_delete_download(store, tmp_path):
    model = make_model(tmp_path / "model.onnx", seed=2)
    store.register("m", model)
    store.register("m", model)
    with pytest.raises(ModelNotFound) as info:
        store.get("m", 9)
    assert info.value.hint == "Available versions: 1, 2."
    with pytest.raises(ModelNotFound, match="no such model"):
        store.get("other")
    dest = tmp_path / "out"
    store.download("m", 2, dest)
    assert (dest / "model.onnx").read_bytes() == model.read_bytes()
    with pytest.raises(ModelError, match="not empty"):
        store.download("m", 2, dest)
    store.delete("m", 1)
    assert [m.version for m in store.list()] == [2]
    store.delete("m")
    assert store.list() == []


@pytest.mark.parametrize("ref,expected", [("m", ("m", None)), ("m:3", ("m", 3)), ("a.b-c_d:10", ("a.b-c_d", 10))])
def test_model_refs(ref, expected):
    assert parse_model_ref(ref) == expected


@pytest.mark.parametrize("ref", ["a:b", "a:0", "bad name!", ":1"])
def test_bad_model_refs(ref):
    with pytest.raises(ModelError):
        parse_model_ref(ref)
