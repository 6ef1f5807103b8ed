"""Pushes ride out a flaky link: a proxy in front of the real registry fails a share of requests (500, 503 with
Retry-After, connections dropped before the request is forwarded, and answers lost after it went through), and
every push still lands with the right digest."""

from __future__ import annotations

import http.client
import json
import random
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from edgepack.errors import RegistryError
from edgepack.oci.descriptor import OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, Descriptor, sha256_digest
from edgepack.oci.ref import ImageRef
from edgepack.registry import RegistryClient, push_image
from edgepack.registry.pull import resolve_digest

pytestmark = pytest.mark.integration


class FaultyProxy:
    """Forwards to ``upstream`` (host:port), failing each request with probability ``rate``."""

    def __init__(self, upstream: str, rate: float, seed: int) -> None:
        self.rate, self.random, self.lock = rate, random.Random(seed), threading.Lock()
        self.faults = 0
        host, port = upstream.split(":")
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _relay(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy.lock:
                    roll = proxy.random.random()
                    fault = roll < proxy.rate
                    kind = proxy.random.choice(("500", "503", "drop", "lost")) if fault else None
                    proxy.faults += fault
                if kind == "drop":
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if kind in ("500", "503"):
                    payload = b'{"errors": [{"code": "UNAVAILABLE", "message": "injected"}]}'
                    self.send_response(int(kind))
                    if kind == "503":
                        self.send_header("Retry-After", "0")
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                if kind == "lost":  # it went through upstream; the client never hears so
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _relay

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _image(folder, seed: int):
    """A small image of random blobs: one layer big enough to go in several chunks."""
    rng = random.Random(seed)
    layers = []
    for size in (300_000, 40_000):
        data = rng.randbytes(size)
        digest = sha256_digest(data)
        (folder / digest.split(":")[1]).write_bytes(data)
        layers.append(Descriptor(OCI_LAYER_GZIP, digest, size))
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {
        "type": "layers", "diff_ids": [d.digest for d in layers]}}).encode()
    config_desc = Descriptor(OCI_CONFIG, sha256_digest(config), len(config))
    (folder / config_desc.digest.split(":")[1]).write_bytes(config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_desc.to_dict(),
                           "layers": [d.to_dict() for d in layers]}, sort_keys=True).encode()
    blobs = (config_desc, *layers)
    return manifest, blobs


# A request gives up after retries + 1 failed tries, so it fails with probability rate ** (retries + 1), and a push
# makes about 20 requests. With the default 4 retries that is 1 push in 5,000 at 10% faults but 1 in 50 at 25%
# (and 1 run in 5 of ten pushes), so the 25% case gives the client 8 retries: 1 push in 13,000.
@pytest.mark.parametrize("rate, pushes, must_land, retries", [
    (0.05, 20, 20, 4), (0.10, 20, 20, 4), (0.25, 10, 10, 8)])
def test_pushes_through_a_registry_failing_requests(dev_registry, tmp_path, rate, pushes, must_land, retries):
    proxy = FaultyProxy(dev_registry, rate, seed=int(rate * 100))
    landed = 0
    try:
        for number in range(pushes):
            folder = tmp_path / f"img{number}"
            folder.mkdir()
            manifest, blobs = _image(folder, seed=random.SystemRandom().randrange(1 << 62))  # new blobs every run
            ref = ImageRef.parse(f"{proxy.address}/flaky/r{int(rate * 100)}:{number}")
            client = RegistryClient(proxy.address, backoff=0.01, retries=retries)
            try:
                result = push_image(client, ref, manifest=manifest, manifest_media_type=OCI_MANIFEST, blobs=blobs,
                                    open_blob=lambda d, f=folder: open(f / d.split(":")[1], "rb"),
                                    chunk_size=64 << 10, workers=2)
            except RegistryError as exc:  # reported, then counted against must_land
                print(f"push {number} failed: {exc.message}")
                continue
            finally:
                client.close()
            direct = RegistryClient(dev_registry)
            try:
                assert resolve_digest(direct, ImageRef.parse(f"{dev_registry}/flaky/r{int(rate * 100)}:{number}")) \
                    == result.ref.digest == sha256_digest(manifest)
            finally:
                direct.close()
            landed += 1
    finally:
        proxy.stop()
    assert proxy.faults > 0
    assert landed >= must_land, f"{landed} of {pushes} pushes landed with {proxy.faults} injected faults"
