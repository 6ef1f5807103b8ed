"""The local model store: versions, digests, ONNX inspection, refusals, look-ups, deletes and copies out."""

from __future__ import annotations

import json
import random
import shutil
import threading

import pytest

from edgepack.errors import InvalidModel, ModelError, ModelNotFound
from edgepack.models.artifact import TensorSpec
from edgepack.models.store import METADATA, LocalModelStore, parse_model_ref
from edgepack.oci.layer import file_sha256
from tests.project import make_model


@pytest.fixture
def store(tmp_path):
    return LocalModelStore(tmp_path / "store")


@pytest.fixture
def folder(tmp_path):
    """A model folder of plain (non-ONNX) files, one of them in a sub-folder."""
    root = tmp_path / "sk"
    (root / "sub").mkdir(parents=True)
    (root / "model.pkl").write_bytes(b"\x80\x04pickle bytes")
    (root / "sub" / "vocab.txt").write_text("a\nb\n")
    return root


# --- registering ---------------------------------------------------------------------------------------------


def test_register_a_file(store, tmp_path):
    model = make_model(tmp_path / "src" / "model.onnx", seed=1)
    art = store.register("lin", model, tags={"team": "vision", "stage": "dev"}, description="first cut")
    assert art.name == "lin"
    assert art.version == 1
    assert art.ref == "lin:1"
    assert art.format == "onnx"
    assert [f.path for f in art.files] == ["model.onnx"]
    assert art.files[0].sha256 == file_sha256(model)
    assert art.files[0].size == model.stat().st_size == art.size
    assert art.root == tmp_path / "store" / "lin" / "1" / "files"
    assert (art.root / "model.onnx").read_bytes() == model.read_bytes()
    assert art.tags == {"team": "vision", "stage": "dev"}
    assert art.description == "first cut"
    assert len(art.sha256) == 64 and int(art.sha256, 16) >= 0
    assert art.created.endswith("Z") and art.created[4] == "-"
    # model.json holds the same record that register returned
    stored = json.loads((art.root.parent / METADATA).read_text())
    assert stored == art.to_dict()
    # no staging folder is left behind
    assert sorted(p.name for p in (tmp_path / "store" / "lin").iterdir()) == ["1"]
    assert store.verify(art) is True


def test_register_a_folder(store, folder):
    art = store.register("sk", folder)
    assert art.format == "files"
    assert art.inputs == () and art.outputs == ()
    assert [f.path for f in art.files] == ["model.pkl", "sub/vocab.txt"]
    assert [f.size for f in art.files] == [len(b"\x80\x04pickle bytes"), 4]
    assert (art.root / "sub" / "vocab.txt").read_text() == "a\nb\n"
    assert art.tags == {} and art.description == ""


def test_a_folder_with_one_onnx_file_is_onnx(store, tmp_path):
    root = tmp_path / "bundle"
    make_model(root / "net.onnx", seed=5, features=6, outputs=2)
    (root / "labels.txt").write_text("cat\ndog\n")
    art = store.register("bundle", root)
    assert art.format == "onnx"
    assert [f.path for f in art.files] == ["labels.txt", "net.onnx"]
    assert art.inputs == (TensorSpec("input", "float32", ("batch", 6)),)
    assert art.outputs == (TensorSpec("output", "float32", ("batch", 2)),)


def test_versions_auto_increment_and_keep_their_own_metadata(store, tmp_path):
    model = make_model(tmp_path / "model.onnx", seed=1)
    one = store.register("lin", model, tags={"k": "v"}, description="first")
    two = store.register("lin", model, tags={"k": "w"}, description="second")
    assert (one.version, two.version) == (1, 2)
    assert store.get("lin", 1).tags == {"k": "v"}
    assert store.get("lin", 1).description == "first"
    assert store.get("lin", 2).tags == {"k": "w"}
    assert store.get("lin", 2).description == "second"
    assert store.get("lin").version == 2
    # another name starts at 1 again
    assert store.register("other", model).version == 1


def test_latest_is_the_numerically_highest_version(store, tmp_path):
    blob = tmp_path / "w.bin"
    blob.write_bytes(b"w")
    for _ in range(11):
        store.register("many", blob)
    assert store.get("many").version == 11
    assert [m.version for m in store.list()] == list(range(1, 12))


def test_concurrent_registrations_get_distinct_versions(store, tmp_path):
    blob = tmp_path / "w.bin"
    blob.write_bytes(b"w")
    results, errors = [], []

    def register():
        try:
            results.append(store.register("race", blob).version)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=register) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results) == list(range(1, 9))
    assert [m.version for m in store.list()] == list(range(1, 9))


def test_digest_is_about_content_not_location(store, tmp_path):
    a = make_model(tmp_path / "a" / "model.onnx", seed=3)
    b = tmp_path / "elsewhere" / "deeper" / "model.onnx"
    b.parent.mkdir(parents=True)
    b.write_bytes(a.read_bytes())
    first = store.register("x", a)
    second = store.register("y", b)
    assert first.sha256 == second.sha256
    # different content, different digest
    third = store.register("z", make_model(tmp_path / "c" / "model.onnx", seed=4))
    assert third.sha256 != first.sha256


def test_folder_digest_is_the_same_from_two_places(store, folder, tmp_path):
    copy = tmp_path / "copy" / "of" / "sk"
    shutil.copytree(folder, copy)
    assert store.register("a", folder).sha256 == store.register("b", copy).sha256


def test_onnx_inputs_and_outputs_are_recorded(store, tmp_path):
    model = make_model(tmp_path / "model.onnx", seed=7, features=4, outputs=3)
    art = store.register("lin", model)
    assert [(t.name, t.elem_type, t.shape) for t in art.inputs] == [("input", "float32", ("batch", 4))]
    assert [(t.name, t.elem_type, t.shape) for t in art.outputs] == [("output", "float32", ("batch", 3))]
    # initializers (W, B) are not reported as inputs
    assert {t.name for t in art.inputs} == {"input"}
    # and the specs survive the round trip through model.json
    got = store.get("lin", 1)
    assert got.inputs == art.inputs and got.outputs == art.outputs
    assert json.loads((art.root.parent / METADATA).read_text())["inputs"] == [
        {"name": "input", "elem_type": "float32", "shape": ["batch", 4]}]


# --- refusals ------------------------------------------------------------------------------------------------


def test_invalid_onnx_is_refused_with_a_hint(store, tmp_path):
    bad = tmp_path / "x.onnx"
    bad.write_bytes(random.Random(1234).randbytes(512))
    with pytest.raises(InvalidModel) as info:
        store.register("bad", bad)
    assert str(info.value).startswith("checking onnx model 'x.onnx': ")
    assert info.value.hint and "Export the model again" in info.value.hint
    assert ".onnx suffix" in info.value.hint
    # nothing was claimed
    assert store.list() == []
    assert not (tmp_path / "store" / "bad").exists()


def test_invalid_onnx_inside_a_folder_is_refused(store, tmp_path):
    root = tmp_path / "m"
    root.mkdir()
    (root / "x.onnx").write_bytes(b"\x00\x01 definitely not a protobuf model \xff\xfe")
    (root / "readme.txt").write_text("hi")
    with pytest.raises(InvalidModel, match="checking onnx model 'x.onnx'"):
        store.register("m", root)
    assert store.list() == []


def test_missing_path_names_the_path(store, tmp_path):
    missing = tmp_path / "nowhere" / "missing.onnx"
    with pytest.raises(ModelError) as info:
        store.register("m", missing)
    assert str(info.value) == f"registering model 'm': '{missing}' does not exist"
    assert info.value.hint == "Check the path to the model file or folder."
    assert not isinstance(info.value, (InvalidModel, ModelNotFound))


def test_symlinked_file_is_refused(store, tmp_path):
    real = make_model(tmp_path / "real.onnx", seed=1)
    link = tmp_path / "link.onnx"
    link.symlink_to(real)
    with pytest.raises(InvalidModel) as info:
        store.register("m", link)
    assert "symbolic links are not followed" in str(info.value)
    assert "link.onnx" in str(info.value)
    assert info.value.hint == "Register the file or folder the link points to."
    assert store.list() == []


def test_dangling_symlink_is_refused_as_a_link(store, tmp_path):
    link = tmp_path / "dangling.onnx"
    link.symlink_to(tmp_path / "gone.onnx")
    with pytest.raises(InvalidModel, match="symbolic links are not followed"):
        store.register("m", link)


@pytest.mark.parametrize("target", ["/etc/passwd", "inside.txt"])
def test_symlink_inside_a_folder_is_refused(store, tmp_path, target):
    root = tmp_path / "linked"
    root.mkdir()
    (root / "inside.txt").write_text("real")
    (root / "sub").mkdir()
    (root / "sub" / "escape").symlink_to(target if target.startswith("/") else root / target)
    with pytest.raises(InvalidModel) as info:
        store.register("m", root)
    assert "'sub/escape' is a symbolic link" in str(info.value)
    assert info.value.hint == "Replace links with the files themselves."
    assert store.list() == []


def test_symlinked_directory_inside_a_folder_is_refused(store, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "secret.txt").write_text("s")
    root = tmp_path / "linked"
    root.mkdir()
    (root / "a.txt").write_text("a")
    (root / "dir").symlink_to(other, target_is_directory=True)
    with pytest.raises(InvalidModel, match="'dir' is a symbolic link"):
        store.register("m", root)


def test_empty_folder_is_refused(store, tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(InvalidModel, match="the folder has no files"):
        store.register("m", tmp_path / "empty")


@pytest.mark.parametrize("name", ["bad name!", "-lead", "", "a/b"])
def test_bad_names_are_refused_before_anything_is_written(store, tmp_path, name):
    blob = tmp_path / "w.bin"
    blob.write_bytes(b"w")
    with pytest.raises(ModelError, match="invalid model name"):
        store.register(name, blob)
    assert not (tmp_path / "store").exists()


def test_a_name_with_a_version_suffix_is_refused(store, tmp_path):
    blob = tmp_path / "w.bin"
    blob.write_bytes(b"w")
    with pytest.raises(ModelError, match="invalid model name"):
        store.register("a:1", blob)


def test_a_folder_holding_model_json_keeps_that_file(store, tmp_path):
    root = tmp_path / "tfjs"
    root.mkdir()
    (root / "model.json").write_text('{"format": "layers-model"}')
    (root / "group1-shard1of1.bin").write_bytes(b"\x00" * 16)
    art = store.register("tfjs", root)
    dest = tmp_path / "out"
    store.download("tfjs", art.version, dest)
    assert (dest / "model.json").read_text() == '{"format": "layers-model"}'
    assert store.verify(art) is True


def test_a_failed_copy_leaves_no_version_behind(store, tmp_path, monkeypatch):
    blob = tmp_path / "w.bin"
    blob.write_bytes(b"w")

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("edgepack.models.store.shutil.copyfile", boom)
    with pytest.raises(OSError, match="No space left"):
        store.register("m", blob)
    monkeypatch.undo()
    assert list((tmp_path / "store" / "m").iterdir()) == []
    assert store.list() == []
    assert store.register("m", blob).version == 1


# --- get, list, delete -----------------------------------------------------------------------------------------


def test_get_unknown_name(store):
    with pytest.raises(ModelNotFound) as info:
        store.get("nope")
    assert str(info.value) == f"finding model 'nope': no such model in {store.root}"
    assert "edgepack model register NAME PATH" in info.value.hint


def test_get_unknown_version_lists_the_available_ones(store, tmp_path):
    model = make_model(tmp_path / "model.onnx", seed=2)
    store.register("m", model)
    store.register("m", model)
    with pytest.raises(ModelNotFound) as info:
        store.get("m", 9)
    assert str(info.value) == "finding model 'm:9': no such version"
    assert info.value.hint == "Available versions: 1, 2."
    store.delete("m", 1)
    with pytest.raises(ModelNotFound) as info:
        store.get("m", 1)
    assert info.value.hint == "Available versions: 2."


def test_list(store, tmp_path, folder):
    assert store.list() == []
    model = make_model(tmp_path / "model.onnx", seed=2)
    store.register("zeta", model)
    store.register("alpha", folder)
    store.register("zeta", model)
    listed = store.list()
    assert [m.ref for m in listed] == ["alpha:1", "zeta:1", "zeta:2"]
    assert [m.format for m in listed] == ["files", "onnx", "onnx"]
    assert listed[1] == store.get("zeta", 1)


def test_list_ignores_stray_entries(store, tmp_path):
    blob = tmp_path / "w.bin"
    blob.write_bytes(b"w")
    store.register("m", blob)
    (store.root / "README").write_text("not a model")
    (store.root / "m" / "notes").mkdir()
    (store.root / "m" / "7").mkdir()  # a version folder without model.json is not a version
    assert [m.ref for m in store.list()] == ["m:1"]
    assert store.register("m", blob).version == 8  # but its number is not reused


def test_delete_one_version_then_all(store, tmp_path):
    model = make_model(tmp_path / "model.onnx", seed=2)
    for _ in range(3):
        store.register("m", model)
    store.register("keep", model)
    store.delete("m", 2)
    assert [m.ref for m in store.list()] == ["keep:1", "m:1", "m:3"]
    assert not (store.root / "m" / "2").exists()
    assert store.get("m").version == 3
    store.delete("m")
    assert [m.ref for m in store.list()] == ["keep:1"]
    with pytest.raises(ModelNotFound, match="no such model"):
        store.get("m")


def test_delete_unknown(store, tmp_path):
    with pytest.raises(ModelNotFound, match="finding model 'ghost'"):
        store.delete("ghost")
    blob = tmp_path / "w.bin"
    blob.write_bytes(b"w")
    store.register("m", blob)
    with pytest.raises(ModelNotFound) as info:
        store.delete("m", 5)
    assert info.value.hint == "Available versions: 1."
    assert [m.ref for m in store.list()] == ["m:1"]


def test_verify_notices_a_changed_file(store, tmp_path):
    blob = tmp_path / "w.bin"
    blob.write_bytes(b"original")
    art = store.register("m", blob)
    assert store.verify(art) is True
    (art.root / "w.bin").write_bytes(b"tampered")
    assert store.verify(art) is False


# --- download --------------------------------------------------------------------------------------------------


def test_download_copies_byte_identical_files(store, folder, tmp_path):
    make_model(folder / "model.onnx", seed=9)
    art = store.register("sk", folder)
    dest = tmp_path / "out" / "new"
    got = store.download("sk", None, dest)
    assert got.ref == "sk:1" == art.ref
    copied = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert copied == ["model.onnx", "model.pkl", "sub/vocab.txt"]  # no model.json
    for rel in copied:
        assert (dest / rel).read_bytes() == (folder / rel).read_bytes()


def test_download_into_an_existing_empty_directory(store, tmp_path):
    blob = tmp_path / "w.bin"
    blob.write_bytes(b"one")
    store.register("m", blob)
    blob.write_bytes(b"two")
    store.register("m", blob)
    dest = tmp_path / "empty"
    dest.mkdir()
    store.download("m", 1, dest)
    assert (dest / "w.bin").read_bytes() == b"one"


def test_download_refuses_a_non_empty_destination(store, tmp_path):
    blob = tmp_path / "w.bin"
    blob.write_bytes(b"w")
    store.register("m", blob)
    dest = tmp_path / "busy"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(ModelError) as info:
        store.download("m", 1, dest)
    assert str(info.value) == f"downloading 'm:1' to '{dest}': the destination exists and is not empty"
    assert info.value.hint == "Choose a new or empty directory."
    assert sorted(p.name for p in dest.iterdir()) == ["keep.txt"]
    # a file in the way is refused as well
    with pytest.raises(ModelError, match="is not empty"):
        store.download("m", 1, dest / "keep.txt")


def test_download_unknown_version(store, tmp_path):
    blob = tmp_path / "w.bin"
    blob.write_bytes(b"w")
    store.register("m", blob)
    with pytest.raises(ModelNotFound):
        store.download("m", 4, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- references ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ref,expected", [("m", ("m", None)), ("m:3", ("m", 3)), ("a.b-c_d:10", ("a.b-c_d", 10)),
                                          ("9lives:1", ("9lives", 1))])
def test_model_refs(ref, expected):
    assert parse_model_ref(ref) == expected


@pytest.mark.parametrize("ref,needle", [
    ("a:b", "version must be a positive integer"),
    ("a:0", "version must be a positive integer"),
    ("a:", "version must be a positive integer"),
    ("a:-1", "version must be a positive integer"),
    ("bad name!", "invalid model name"),
    (":1", "invalid model name"),
    ("_x", "invalid model name"),
])
def test_bad_model_refs(ref, needle):
    with pytest.raises(ModelError) as info:
        parse_model_ref(ref)
    assert str(info.value) == f"reading model reference '{ref}': {needle}"
    assert info.value.hint
