"""The registry client at its transport seam (retries, Bearer tokens) and against a real registry (chunks)."""

from __future__ import annotations

import io
import json
import os
import stat

import httpx
import pytest

from edgepack.errors import AuthenticationError, InvalidReference, RegistryError
from edgepack.oci.descriptor import OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, Descriptor, sha256_digest
from edgepack.oci.ref import ImageRef
from edgepack.registry import RegistryClient, find_credentials, pull_image, push_image
from tests.registry_server import start_registry


def _image(size: int = 3000) -> tuple[bytes, list[Descriptor], dict[str, bytes]]:
    layer = os.urandom(size)
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    blobs = {sha256_digest(layer): layer, sha256_digest(config): config}
    descs = [Descriptor(OCI_CONFIG, sha256_digest(config), len(config)),
             Descriptor(OCI_LAYER_GZIP, sha256_digest(layer), len(layer))]
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descs[0].to_dict(),
                           "layers": [descs[1].to_dict()]}).encode()
    return manifest, descs, blobs


@pytest.mark.parametrize("text,expected", [
    ("ubuntu", "docker.io/library/ubuntu"),
    ("127.0.0.1:5000/a/b:1", "127.0.0.1:5000/a/b:1"),
    ("localhost/x:latest", "localhost/x:latest"),
    ("mcr.microsoft.com/azure-functions/python:4-python3.11", "mcr.microsoft.com/azure-functions/python:4-python3.11"),
])
def test_reference_parsing(text, expected):
    assert str(ImageRef.parse(text)) == expected


@pytest.mark.parametrize("text", ["", "Upper/Case", "repo:bad tag", "repo@sha256:123", " padded"])
def test_bad_references_are_named(text):
    with pytest.raises(InvalidReference) as info:
        ImageRef.parse(text)
    assert info.value.hint


def test_retries_5xx_and_dropped_connections_then_succeeds():
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.ReadError("connection dropped", request=request)
        if calls["n"] == 2:
            return httpx.Response(503, json={"errors": [{"code": "UNAVAILABLE", "message": "busy"}]})
        return httpx.Response(200, headers={"Content-Type": OCI_MANIFEST}, content=b"{}")

    client = RegistryClient("registry.example", transport=httpx.MockTransport(handler), backoff=0)
    assert client.request("GET", "/v2/", scope="", action="probing").status_code == 200
    assert calls["n"] == 3


def test_gives_up_after_bounded_retries_with_the_registry_message():
    def handler(request):
        return httpx.Response(500, json={"errors": [{"code": "UNKNOWN", "message": "disk full"}]})

    client = RegistryClient("registry.example", transport=httpx.MockTransport(handler), retries=2, backoff=0)
    with pytest.raises(RegistryError, match="pulling 'x': unknown: disk full"):
        client.request("GET", "/v2/x/manifests/1", scope="", action="pulling 'x'")


def test_bearer_token_flow_with_basic_credentials_to_the_realm():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "auth.example":
            assert request.headers["Authorization"].startswith("Basic ")
            assert request.url.params["scope"] == "repository:team/app:pull,push"
            assert request.url.params["service"] == "registry.example"
            return httpx.Response(200, json={"token": "tok-123"})
        if request.headers.get("Authorization") == "Bearer tok-123":
            return httpx.Response(200)
        return httpx.Response(401, headers={"WWW-Authenticate":
                                            'Bearer realm="https://auth.example/token",service="registry.example"'})

    client = RegistryClient("registry.example", credentials=("u", "p"), transport=httpx.MockTransport(handler))
    assert client.request("HEAD", "/v2/team/app/blobs/sha256:0", scope="repository:team/app:pull,push",
                          action="checking").status_code == 200
    assert [r.url.host for r in seen] == ["registry.example", "auth.example", "registry.example"]


def test_refused_token_is_an_authentication_error_without_the_password():
    def handler(request):
        if request.url.host == "auth.example":
            return httpx.Response(401)
        return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="https://auth.example/t",service="r"'})

    client = RegistryClient("registry.example", credentials=("u", "hunter2"), transport=httpx.MockTransport(handler))
    with pytest.raises(AuthenticationError) as info:
        client.request("GET", "/v2/x/manifests/1", scope="repository:x:pull", action="pulling 'x'")
    assert "hunter2" not in str(info.value) and "docker login" in info.value.hint


def test_credential_helper_protocol(tmp_path, monkeypatch):
    helper = tmp_path / "bin" / "docker-credential-edgepacktest"
    helper.parent.mkdir()
    helper.write_text("#!/bin/sh\nread server\n"
                      "if [ \"$server\" = reg.example ]; then echo '{\"Username\":\"hu\",\"Secret\":\"hs\"}'; "
                      "else echo 'credentials not found in native keychain'; exit 1; fi\n")
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    (tmp_path / "config.json").write_text(json.dumps({"credsStore": "edgepacktest"}))
    env = {"DOCKER_CONFIG": str(tmp_path), "PATH": f"{helper.parent}:{os.environ['PATH']}"}
    monkeypatch.setenv("PATH", env["PATH"])
    creds = find_credentials("reg.example", env)
    assert (creds.username, creds.password) == ("hu", "hs")
    assert "hs" not in repr(creds)
    assert find_credentials("other.example", env) is None


@pytest.mark.integration
def test_chunked_push_then_pull_back_byte_identical(tmp_path):
    registry = start_registry(tmp_path / "reg")
    try:
        manifest, descs, blobs = _image(size=300_000)
        client = RegistryClient(registry.address)
        ref = ImageRef.parse(f"{registry.address}/chunks/app:1")
        result = push_image(client, ref, manifest=manifest, manifest_media_type=OCI_MANIFEST, blobs=descs,
                            open_blob=lambda d: io.BytesIO(blobs[d]), chunk_size=64 << 10)
        assert result.ref.digest == sha256_digest(manifest)
        patches = [uri for method, uri in registry.received() if method == "PATCH"]
        assert len(patches) == 5  # 300 kB in 64 kB chunks; the small config went in one PUT
        pulled = pull_image(client, ref, cache_dir=tmp_path / "cache")
        assert pulled.manifest_bytes == manifest
        assert pulled.blob_path(descs[1].digest).read_bytes() == blobs[descs[1].digest]
        registry.mark()
        again = push_image(client, ref, manifest=manifest, manifest_media_type=OCI_MANIFEST, blobs=descs,
                           open_blob=lambda d: io.BytesIO(blobs[d]))
        assert again.uploaded == () and set(again.skipped) == set(blobs)
        assert registry.uploaded_digests() == []
        mounted = push_image(client, ImageRef.parse(f"{registry.address}/other/app:1"), manifest=manifest,
                             manifest_media_type=OCI_MANIFEST, blobs=descs, open_blob=lambda d: io.BytesIO(blobs[d]),
                             mount_from=("chunks/app",))
        assert set(mounted.mounted) == set(blobs) and mounted.bytes_sent == len(manifest)
        client.close()
    finally:
        registry.stop()
