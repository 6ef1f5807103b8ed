"""Every image's SBOM and provenance: what they list, where they are attached (layouts, the registry's referrers
API or the tag-schema fallback), that they hold nothing secret, and ``verify`` rebuilding from them."""

from __future__ import annotations

import gzip
import io
import json
import re
import tarfile
import urllib.request
import uuid

import pytest

from edgepack.attest import sbom as sbom_lib
from edgepack.build.baseinfo import parse_dpkg_status
from edgepack.oci.referrers import fallback_tag
from tests.project import make_model, make_project, run_cli
from tests.referrers_proxy import ReferrersProxy

pytestmark = pytest.mark.integration

SECRET = "s3cret-" + uuid.uuid4().hex


@pytest.fixture
def project(tmp_path, edgepack_home, capsys, monkeypatch, dev_registry):
    # credentials in reach of the build: the push's and the base registry's (which the config names by variable)
    monkeypatch.setenv("EDGEPACK_REGISTRY_PASSWORD", SECRET)
    monkeypatch.setenv("BASE_REGISTRY_PASSWORD", SECRET + "-base")
    model = make_model(tmp_path / "v1" / "model.onnx", seed=1)
    config = make_project(tmp_path)
    data = json.loads(config.read_text())
    data["baseImageRegistry"] = {"address": dev_registry, "username": "svc", "passwordEnv": "BASE_REGISTRY_PASSWORD"}
    config.write_text(json.dumps(data))
    code, _, err = run_cli(["model", "register", "linear", str(model)], capsys)
    assert code == 0, err
    return {"root": tmp_path, "config": config, "model": model}


def _package(capsys, project, base, *extra: str) -> dict:
    code, out, err = run_cli(["package", "--model", "linear", "--inference-config", str(project["config"]),
                              "--target", "webservice", "--base-image", base, "--json", *extra], capsys)
    assert code == 0, err
    return json.loads(out)


def _document(capsys, kind: str, source: str, *extra: str) -> dict:
    code, out, err = run_cli([kind, source, *extra], capsys)
    assert code == 0, err
    return json.loads(out)


def _members(blob: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        return {m.name.removeprefix("./"): tar.extractfile(m).read()  # type: ignore[union-attr]
                for m in tar if m.isfile()}


def test_the_sbom_validates_and_lists_every_wheel_every_debian_package_the_runtime_and_the_model(
        project, base_image_ref, capsys, tmp_path):
    out = tmp_path / "layout"
    result = _package(capsys, project, base_image_ref, "--output", str(out))
    document = _document(capsys, "sbom", str(out))
    assert sbom_lib.validate(json.dumps(document).encode()) is None
    assert document["specVersion"] == "1.6"
    assert document["metadata"]["component"]["version"] == result["digest"]
    manifest = json.loads((out / "blobs" / "sha256" / result["digest"].split(":")[1]).read_bytes())
    blob = lambda d: (out / "blobs" / "sha256" / d.split(":")[1]).read_bytes()  # noqa: E731
    # every wheel in the dependency layer, by its dist-info folder
    deps = _members(blob(result["new_layers"][0]))
    wheels = {}
    for name, data in deps.items():
        if name.endswith(".dist-info/METADATA"):
            meta = dict(re.findall(r"^(Name|Version): (.+)$", data.decode(), re.M))
            wheels[meta["Name"].lower().replace("_", "-")] = meta["Version"]
    listed = {c["name"].lower().replace("_", "-"): c for c in document["components"]
              if c.get("purl", "").startswith("pkg:pypi/")}
    assert wheels and {n: c["version"] for n, c in listed.items()} == wheels
    assert all(len(c["hashes"][0]["content"]) == 64 for c in listed.values())
    # every Debian package of the base, read here from the base layers' dpkg status
    status = b""
    for layer in manifest["layers"][:-len(result["new_layers"])]:
        status = _members(blob(layer["digest"])).get("var/lib/dpkg/status", status)
    debs = {name: version for name, version, _ in parse_dpkg_status(status.decode())}
    assert len(debs) > 50
    assert {c["name"]: c["version"] for c in document["components"]
            if c.get("purl", "").startswith("pkg:deb/debian/")} == debs
    model = next(c for c in document["components"] if c["type"] == "machine-learning-model")
    code, out_text, _ = run_cli(["model", "show", "linear:1"], capsys)
    assert code == 0
    assert (model["name"], model["version"]) == ("linear", "1")
    assert model["hashes"][0]["content"] in out_text
    assert any(c["name"] == "edgepack-runtime" for c in document["components"])


def test_the_provenance_records_the_inputs_and_every_layer_of_the_image(project, base_image_ref, capsys, tmp_path):
    out = tmp_path / "layout"
    result = _package(capsys, project, base_image_ref, "--output", str(out))
    statement = _document(capsys, "provenance", str(out))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    assert "sha256:" + statement["subject"][0]["digest"]["sha256"] == result["digest"]
    manifest = json.loads((out / "blobs" / "sha256" / result["digest"].split(":")[1]).read_bytes())
    recorded = ["sha256:" + b["digest"]["sha256"] for b in statement["predicate"]["runDetails"]["byproducts"]]
    assert recorded == [layer["digest"] for layer in manifest["layers"]]
    kinds = {d["annotations"]["kind"] for d in statement["predicate"]["buildDefinition"]["resolvedDependencies"]}
    assert kinds == {"base image", "model", "inference config", "source directory", "dependency lock"}
    params = statement["predicate"]["buildDefinition"]["externalParameters"]
    assert params["target"]["name"] == "webservice" and params["platform"] == "linux/amd64"
    assert SECRET not in json.dumps(statement) + json.dumps(_document(capsys, "sbom", str(out)))


def _tags(registry: str, repo: str) -> list[str]:
    with urllib.request.urlopen(f"http://{registry}/v2/{repo}/tags/list", timeout=10) as resp:
        return json.loads(resp.read())["tags"]


def test_a_registry_without_the_referrers_api_gets_the_tag_schema_fallback(project, base_image_ref, dev_registry,
                                                                          capsys):
    repo = f"supply/{uuid.uuid4().hex[:8]}"
    result = _package(capsys, project, base_image_ref, "--tag", f"{dev_registry}/{repo}:1", "--push",
                      "--registry-username", "someone")
    digest = result["digest"]
    assert result["referrers"] == "tag schema"
    with pytest.raises(urllib.error.HTTPError) as missing:  # Debian's registry 2.8 has no referrers API
        urllib.request.urlopen(f"http://{dev_registry}/v2/{repo}/referrers/{digest}", timeout=10)
    assert missing.value.code == 404
    assert fallback_tag(digest) in _tags(dev_registry, repo)
    request = urllib.request.Request(f"http://{dev_registry}/v2/{repo}/manifests/{fallback_tag(digest)}",
                                     headers={"Accept": "application/vnd.oci.image.index.v1+json"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        listed = json.loads(resp.read())["manifests"]
    assert sorted(e["artifactType"] for e in listed) == ["application/vnd.cyclonedx+json",
                                                        "application/vnd.in-toto+json"]
    sbom = _document(capsys, "sbom", f"{dev_registry}/{repo}:1")
    provenance = _document(capsys, "provenance", f"{dev_registry}/{repo}@{digest}")
    assert sbom["metadata"]["component"]["version"] == digest
    # pushing again does not list them twice
    _package(capsys, project, base_image_ref, "--tag", f"{dev_registry}/{repo}:1", "--push")
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert len(json.loads(resp.read())["manifests"]) == 2
    for document in (sbom, provenance):
        assert SECRET not in json.dumps(document)  # nor the base registry's, which starts the same


def test_a_registry_with_the_referrers_api_keeps_the_list_itself(project, base_image_ref, dev_registry, capsys):
    repo = f"supply/{uuid.uuid4().hex[:8]}"
    proxy = ReferrersProxy(dev_registry)
    with proxy as address:
        result = _package(capsys, project, base_image_ref, "--tag", f"{address}/{repo}:1", "--push")
        sbom = _document(capsys, "sbom", f"{address}/{repo}:1")
    assert sbom["metadata"]["component"]["version"] == result["digest"]
    assert result["referrers"] == "referrers API"
    listed = proxy.referrers[(repo, result["digest"])]
    assert sorted(e["artifactType"] for e in listed) == ["application/vnd.cyclonedx+json",
                                                        "application/vnd.in-toto+json"]
    assert proxy.listed >= 2  # asked once after pushing, once to read
    assert _tags(dev_registry, repo) == ["1"]  # no fallback tag written


def test_verify_passes_on_a_fresh_build_and_names_a_changed_source_directory_or_model(
        project, base_image_ref, capsys, tmp_path):
    out = tmp_path / "layout"
    result = _package(capsys, project, base_image_ref, "--output", str(out))
    # caches written by running the script locally are not part of the image, nor of its source's digest
    (project["root"] / "src" / "__pycache__").mkdir()
    (project["root"] / "src" / "__pycache__" / "score.cpython-311.pyc").write_bytes(b"\x00" * 16)
    code, text, err = run_cli(["verify", str(out)], capsys)
    assert code == 0, err
    assert result["digest"] in text
    score = project["root"] / "src" / "score.py"
    original = score.read_text()
    score.write_text(original + "\n# changed\n")
    code, _, err = run_cli(["verify", str(out)], capsys)
    assert code == 1
    assert "source directory" in err and str(project["root"] / "src") in err
    score.write_text(original)
    assert run_cli(["verify", str(out)], capsys)[0] == 0
    # the model: version 1 deleted and registered again from other weights
    assert run_cli(["model", "delete", "linear:1"], capsys)[0] == 0
    assert run_cli(["model", "register", "linear", str(make_model(tmp_path / "v2" / "model.onnx", seed=2))],
                   capsys)[0] == 0
    code, _, err = run_cli(["verify", str(out)], capsys)
    assert code == 1
    assert "model linear:1" in err and "source directory" not in err


def test_a_pushed_layout_takes_its_sbom_and_provenance_along(project, base_image_ref, dev_registry, capsys,
                                                             tmp_path):
    out = tmp_path / "layout"
    result = _package(capsys, project, base_image_ref, "--output", str(out))
    repo = f"supply/{uuid.uuid4().hex[:8]}"
    code, _, err = run_cli(["push", str(out), "--to", f"{dev_registry}/{repo}:1"], capsys)
    assert code == 0, err
    assert _document(capsys, "provenance", f"{dev_registry}/{repo}:1") == _document(capsys, "provenance", str(out))
    assert fallback_tag(result["digest"]) in _tags(dev_registry, repo)
