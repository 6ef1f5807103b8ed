"""Pushing to real registries: model-only updates send one layer; Basic auth over TLS with a docker config;
credentials never reach an image, its config, its history or the logs."""

from __future__ import annotations

import base64
import gzip
import json

import pytest

from edgepack import api
from edgepack.oci.descriptor import sha256_digest
from edgepack.oci.ref import ImageRef
from edgepack.registry import RegistryClient, pull_image
from tests.project import make_model, make_project, run_cli
from tests.registry_server import start_registry

pytestmark = pytest.mark.integration
USER, PASSWORD = "edgepack-user-q7", "pw-Zr8s2kQ0-never-in-images"
CONNECTION = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0LWtleS1uZXZlci1pbi1pbWFnZXM="


@pytest.fixture
def registry(tmp_path):
    reg = start_registry(tmp_path / "registry")
    yield reg
    reg.stop()


@pytest.fixture
def tls_registry(tmp_path):
    reg = start_registry(tmp_path / "tls-registry", auth=(USER, PASSWORD), tls=True)
    yield reg
    reg.stop()


@pytest.fixture
def project(tmp_path, edgepack_home, capsys):
    config = make_project(tmp_path / "proj")
    model = make_model(tmp_path / "v1" / "model.onnx", seed=11, padding=256 << 10)
    assert run_cli(["model", "register", "m", str(model)], capsys)[0] == 0
    return config


def _package(capsys, config, base, *extra):
    code, out, err = run_cli(["package", "--model", "m", "--inference-config", str(config), "--target",
                              "webservice", "--base-image", base, "--json", *extra], capsys)
    assert code == 0, err
    return json.loads(out)


def test_model_only_update_uploads_exactly_the_model_layer(project, registry, base_image_ref, capsys, tmp_path):
    first = _package(capsys, project, base_image_ref, "--tag", f"{registry.address}/app:1", "--push")
    assert len(first["pushed"]["uploaded"]) == len(first["layers"]) + 1  # every layer and the config
    assert run_cli(["model", "register", "m", str(make_model(tmp_path / "v2" / "model.onnx", seed=12,
                                                                padding=256 << 10))], capsys)[0] == 0
    registry.mark()
    second = _package(capsys, project, base_image_ref, "--tag", f"{registry.address}/app:2", "--push")
    changed = [i for i, (a, b) in enumerate(zip(first["layers"], second["layers"])) if a != b]
    assert changed == [len(first["layers"]) - 1]  # only the last (model) layer differs
    model_layer = second["layers"][-1]
    received = registry.uploaded_digests()
    assert model_layer in received
    assert set(received) & set(second["layers"]) == {model_layer}
    # besides the model layer: the (small) image config, and the image's own SBOM and provenance documents
    records = {sha256_digest(api.attestation(f"{registry.address}/app:2", kind)) for kind in ("sbom", "provenance")}
    assert len(set(received) - {model_layer} - records) == 1 and records <= set(received)
    assert len(received) == 4  # nothing else was sent
    assert second["pushed"]["bytes_sent"] < 2 * (256 << 10) + 64 << 10
    # The tag points at the new manifest only after every image blob was in place; its records follow it.
    methods = registry.received()
    tagged = next(i for i, (method, path) in enumerate(methods) if method == "PUT" and path.endswith("/manifests/2"))
    before = [uri for method, uri in methods[:tagged] if method == "PUT" and "digest=" in uri]
    after = [uri for method, uri in methods[tagged + 1:] if method == "PUT" and "digest=" in uri]
    assert any(model_layer.split(":")[1] in uri for uri in before)
    assert len(after) == 2 and all(any(r.split(":")[1] in uri for r in records) for uri in after)


def _docker_config(tmp_path, registry, password: str):
    folder = tmp_path / "docker-config"
    folder.mkdir(exist_ok=True)
    auth = base64.b64encode(f"{USER}:{password}".encode()).decode()
    (folder / "config.json").write_text(json.dumps({"auths": {registry.address: {"auth": auth}}}))
    return folder


def test_push_over_tls_with_basic_auth_from_docker_config(project, tls_registry, base_image_ref, capsys, tmp_path,
                                                          monkeypatch):
    layout = tmp_path / "layout"
    _package(capsys, project, base_image_ref, "--output", str(layout))
    monkeypatch.setenv("DOCKER_CONFIG", str(_docker_config(tmp_path, tls_registry, PASSWORD)))
    to = f"{tls_registry.address}/secure/app:1"
    code, out, err = run_cli(["-vv", "push", str(layout), "--to", to, "--ca-file", str(tls_registry.ca_file)], capsys)
    assert code == 0, err
    assert out.strip().startswith(f"{tls_registry.address}/secure/app@sha256:")
    assert PASSWORD not in err and PASSWORD not in out
    # Without the CA, TLS verification fails with a clear message (never silently downgraded to HTTP).
    code, out, err = run_cli(["push", str(layout), "--to", to], capsys)
    assert code == 1
    assert "error: " in err and "CERTIFICATE_VERIFY_FAILED" in err and "Traceback" not in err


def test_wrong_password_is_a_clear_error(project, tls_registry, base_image_ref, capsys, tmp_path, monkeypatch):
    layout = tmp_path / "layout"
    _package(capsys, project, base_image_ref, "--output", str(layout))
    monkeypatch.setenv("DOCKER_CONFIG", str(_docker_config(tmp_path, tls_registry, "wrong-password")))
    code, out, err = run_cli(["push", str(layout), "--to", f"{tls_registry.address}/secure/app:1", "--ca-file",
                              str(tls_registry.ca_file)], capsys)
    assert code == 1
    assert err.startswith("error: ") and "unauthorized" in err
    assert f"hint: Run 'docker login {tls_registry.address}'" in err
    assert "Traceback" not in err and "wrong-password" not in err


def test_no_credential_or_connection_string_enters_the_image(project, tls_registry, base_image_ref, capsys,
                                                             tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPACK_REGISTRY_USERNAME", USER)
    monkeypatch.setenv("EDGEPACK_REGISTRY_PASSWORD", PASSWORD)
    monkeypatch.setenv("AzureWebJobsStorage", CONNECTION)
    context = tmp_path / "ctx"
    layout = tmp_path / "layout"
    _package(capsys, project, base_image_ref, "--output", str(layout), "--dockerfile-context", str(context))
    code, out, err = run_cli(["push", str(layout), "--to", f"{tls_registry.address}/secure/app:1", "--ca-file",
                              str(tls_registry.ca_file)], capsys)
    assert code == 0, err
    ref = ImageRef.parse(out.strip())
    client = RegistryClient(ref.registry, credentials=(USER, PASSWORD), ca_file=str(tls_registry.ca_file))
    pulled = pull_image(client, ref, cache_dir=tmp_path / "pulled")
    client.close()
    secrets = [PASSWORD.encode(), USER.encode(), CONNECTION.encode(), b"AccountKey="]
    blobs = [pulled.blob_path(pulled.config_descriptor.digest).read_bytes()]
    blobs += [gzip.decompress(pulled.blob_path(d.digest).read_bytes()) for d in pulled.layers]
    config = json.loads(blobs[0])
    assert config["history"] and config["config"]["Env"]
    for blob in [pulled.manifest_bytes, *blobs]:
        for secret in secrets:
            assert secret not in blob
    for path in [*context.rglob("*"), *layout.rglob("*")]:
        if path.is_file():
            data = path.read_bytes()
            data = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
            assert not any(secret in data for secret in secrets), path
