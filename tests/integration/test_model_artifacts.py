"""Models as OCI artifacts in a real registry: `model push` stores a registered model (a layer per file, the
artifact type, annotations), `model pull` registers it elsewhere with the same name, version and sha256, over
TLS with Basic auth as for images; bad references and conflicts are refused with nothing changed."""

from __future__ import annotations

import json
import urllib.request
import uuid

import pytest

from edgepack.oci.ref import ImageRef
from edgepack.registry import RegistryClient
from edgepack.runtime.model_artifact import ARTIFACT_TYPE, EMPTY_MEDIA_TYPE, FILE_MEDIA_TYPE, TITLE
from tests.project import make_model, run_cli
from tests.registry_server import start_registry

pytestmark = pytest.mark.integration
USER, PASSWORD = "model-user-k2", "pw-models-Xq81-secret"


@pytest.fixture
def folder_model(tmp_path):
    root = tmp_path / "classifier"
    make_model(root / "model.onnx", seed=5, padding=64 << 10)
    (root / "labels").mkdir()
    (root / "labels" / "names.txt").write_text("cat\ndog\nbird\n")
    return root


def _manifest(registry: str, ref: str) -> dict:
    repo, _, reference = ref.split("/", 1)[1].partition("@")
    request = urllib.request.Request(f"http://{registry}/v2/{repo}/manifests/{reference}",
                                     headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_push_then_pull_into_another_home_keeps_name_version_files_and_sha(
        folder_model, dev_registry, edgepack_home, tmp_path, capsys, monkeypatch):
    assert run_cli(["model", "register", "clf", str(folder_model)], capsys)[0] == 0
    assert run_cli(["model", "register", "clf", str(folder_model)], capsys)[0] == 0  # version 2
    _, out, _ = run_cli(["model", "show", "clf:2"], capsys)
    registered = json.loads(out)
    repo = f"{dev_registry}/models/clf-{uuid.uuid4().hex[:12]}"
    code, out, err = run_cli(["model", "push", "clf:2", "--to", repo, "--json"], capsys)
    assert code == 0, err
    pushed = json.loads(out)
    assert pushed["ref"].startswith(f"{repo}@sha256:")
    manifest = _manifest(dev_registry, pushed["ref"])
    assert manifest["artifactType"] == ARTIFACT_TYPE
    assert manifest["config"]["mediaType"] == EMPTY_MEDIA_TYPE
    titles = {layer["annotations"][TITLE]: layer for layer in manifest["layers"]}
    assert set(titles) == {"model.onnx", "labels/names.txt"}
    assert all(layer["mediaType"] == FILE_MEDIA_TYPE for layer in manifest["layers"])
    digests = {f["path"]: f"sha256:{f['sha256']}" for f in registered["files"]}
    assert {p: layer["digest"] for p, layer in titles.items()} == digests
    notes = manifest["annotations"]
    assert (notes["io.edgepack.model.name"], notes["io.edgepack.model.version"]) == ("clf", "2")
    assert notes["io.edgepack.model.sha256"] == registered["sha256"]
    assert json.loads(notes["io.edgepack.model.inputs"])[0]["name"] == "input"
    # The tag defaults to the model's version.
    assert _manifest(dev_registry, f"{repo}@2") == manifest

    monkeypatch.setenv("EDGEPACK_HOME", str(tmp_path / "device-home"))
    code, out, err = run_cli(["model", "pull", pushed["ref"], "--json"], capsys)
    assert code == 0, err
    pulled = json.loads(out)
    assert (pulled["name"], pulled["version"], pulled["sha256"]) == ("clf", 2, registered["sha256"])
    assert pulled["folder"] == "classifier" and pulled["manifest_digest"] == pushed["ref"].split("@")[1]
    dest = tmp_path / "out"
    assert run_cli(["model", "download", "clf:2", str(dest)], capsys)[0] == 0
    assert (dest / "labels" / "names.txt").read_text() == "cat\ndog\nbird\n"
    assert (dest / "model.onnx").read_bytes() == (folder_model / "model.onnx").read_bytes()
    # Pulling what is held already changes nothing; pulling by tag gives the same model.
    code, out, _ = run_cli(["model", "pull", f"{repo}:2"], capsys)
    assert code == 0 and out.strip() == f"clf:2 sha256:{registered['sha256']}"
    _, out, _ = run_cli(["model", "list", "--json"], capsys)
    assert [m["version"] for m in json.loads(out)] == [2]


def test_a_second_push_sends_only_the_manifest(folder_model, dev_registry, edgepack_home, tmp_path, capsys):
    assert run_cli(["model", "register", "clf", str(folder_model)], capsys)[0] == 0
    repo = f"{dev_registry}/models/again-{uuid.uuid4().hex[:12]}"
    first = json.loads(run_cli(["model", "push", "clf", "--to", f"{repo}:a", "--json"], capsys)[1])
    second = json.loads(run_cli(["model", "push", "clf", "--to", f"{repo}:b", "--json"], capsys)[1])
    assert len(first["uploaded"]) == 3  # two files and the empty config
    assert second["uploaded"] == [] and len(second["skipped"]) == 3
    assert first["ref"] == second["ref"]  # the same model has the same digest wherever it is pushed


def test_pull_refuses_a_conflicting_local_version_and_changes_nothing(
        folder_model, dev_registry, edgepack_home, tmp_path, capsys, monkeypatch):
    assert run_cli(["model", "register", "clf", str(folder_model)], capsys)[0] == 0
    repo = f"{dev_registry}/models/conflict-{uuid.uuid4().hex[:12]}"
    ref = json.loads(run_cli(["model", "push", "clf:1", "--to", repo, "--json"], capsys)[1])["ref"]
    monkeypatch.setenv("EDGEPACK_HOME", str(tmp_path / "other"))
    other = make_model(tmp_path / "other-model" / "model.onnx", seed=99)
    assert run_cli(["model", "register", "clf", str(other)], capsys)[0] == 0
    before = json.loads(run_cli(["model", "show", "clf:1"], capsys)[1])
    code, _, err = run_cli(["model", "pull", ref], capsys)
    assert code == 1
    assert "'clf:1' is registered here already with other content" in err and "hint:" in err
    assert json.loads(run_cli(["model", "show", "clf:1"], capsys)[1]) == before


def test_pulling_an_image_or_a_missing_tag_is_a_named_error(
        dev_registry, base_image_ref, edgepack_home, tmp_path, capsys):
    code, _, err = run_cli(["model", "pull", base_image_ref], capsys)
    assert code == 1 and "it is not an edgepack model" in err and "Traceback" not in err
    code, _, err = run_cli(["model", "pull", f"{dev_registry}/models/none-{uuid.uuid4().hex[:12]}:9"], capsys)
    assert code == 1 and "error:" in err and "Traceback" not in err
    code, _, err = run_cli(["model", "push", "nosuch", "--to", f"{dev_registry}/x"], capsys)
    assert code == 1 and "no such model" in err


def test_push_and_pull_over_tls_with_basic_auth(folder_model, edgepack_home, tmp_path, capsys, monkeypatch):
    reg = start_registry(tmp_path / "tls-registry", auth=(USER, PASSWORD), tls=True)
    try:
        assert run_cli(["model", "register", "clf", str(folder_model)], capsys)[0] == 0
        monkeypatch.setenv("EDGEPACK_REGISTRY_PASSWORD", PASSWORD)
        flags = ["--registry-username", USER, "--ca-file", str(reg.ca_file)]
        code, out, err = run_cli(["model", "push", "clf", "--to", f"{reg.address}/models/clf", *flags], capsys)
        assert code == 0, err
        ref = out.strip()
        assert PASSWORD not in out + err
        monkeypatch.setenv("EDGEPACK_HOME", str(tmp_path / "device"))
        code, _, err = run_cli(["model", "pull", ref, "--ca-file", str(reg.ca_file)], capsys)
        assert code == 1 and "unauthorized" in err  # no user given: the registry refuses
        code, out, err = run_cli(["model", "pull", ref, *flags], capsys)
        assert code == 0, err
        assert out.startswith("clf:1 sha256:")
        # Same client as images: the blobs reached the registry by digest.
        client = RegistryClient(reg.address, credentials=(USER, PASSWORD), ca_file=str(reg.ca_file))
        try:
            assert client.request("HEAD", f"/v2/models/clf/manifests/{ImageRef.parse(ref).digest}",
                                  headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
                                  scope="repository:models/clf:pull", action="check").status_code == 200
        finally:
            client.close()
    finally:
        reg.stop()
