"""Real distribution registries for tests: Debian's docker-registry on a free loopback port, optionally with
htpasswd Basic auth over TLS (a throwaway CA made with openssl), and a reader for what the registry received.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from edgepack.deploy.local import free_port


def make_ca_and_cert(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1; returns (ca.crt, server.crt, server.key)."""
    folder.mkdir(parents=True, exist_ok=True)
    run = lambda *args: subprocess.run(args, cwd=folder, check=True, capture_output=True)  # noqa: E731
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=edgepack test CA",
        "-keyout", "ca.key", "-out", "ca.crt")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
        "-out", "server.csr")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "san.ext", "-out", "server.crt")
    return folder / "ca.crt", folder / "server.crt", folder / "server.key"


@dataclass
class Registry:
    """A running registry process."""

    address: str
    log_path: Path
    process: subprocess.Popen
    ca_file: Path | None = None
    username: str | None = None
    password: str | None = None
    _offset: int = field(default=0)

    def mark(self) -> None:
        """Forget what was received so far; ``received()`` reports only newer requests."""
        self._offset = self.log_path.stat().st_size

    def received(self) -> list[tuple[str, str]]:
        """(method, URI) of each request logged since the last ``mark()`` (access log lines)."""
        with open(self.log_path, "rb") as f:
            f.seek(self._offset)
            text = f.read().decode(errors="replace")
        return re.findall(r'"(GET|HEAD|POST|PUT|PATCH|DELETE) (\S+) HTTP/[\d.]+"', text)

    def uploaded_digests(self) -> list[str]:
        """Digests of blob uploads the registry completed since the last mark (``PUT ...?digest=``)."""
        return [re.search(r"digest=(sha256(?:%3A|:)[0-9a-f]{64})", uri).group(1).replace("%3A", ":")
                for method, uri in self.received() if method == "PUT" and "/blobs/uploads/" in uri and "digest=" in uri]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def start_registry(folder: Path, *, auth: tuple[str, str] | None = None, tls: bool = False) -> Registry:
    """Start a registry storing under ``folder``; with ``auth`` it requires Basic credentials; with ``tls`` it
    serves HTTPS with a certificate from a throwaway CA."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {"version": 0.1, "log": {"level": "info", "accesslog": {"disabled": False}},
              "storage": {"filesystem": {"rootdirectory": str(folder / "data")}, "delete": {"enabled": True}},
              "http": {"addr": f"127.0.0.1:{port}"}}
    ca = None
    if tls:
        ca, cert, key = make_ca_and_cert(folder / "tls")
        config["http"]["tls"] = {"certificate": str(cert), "key": str(key)}
    if auth:
        htpasswd = folder / "htpasswd"
        subprocess.run(["htpasswd", "-Bbc", str(htpasswd), auth[0], auth[1]], check=True, capture_output=True)
        config["auth"] = {"htpasswd": {"realm": "edgepack-test", "path": str(htpasswd)}}
    (folder / "config.yml").write_text(json.dumps(config))
    log_path = folder / "registry.log"
    with open(log_path, "wb") as log_file:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(["docker-registry", "serve", str(folder / "config.yml")], stdout=log_file,
                                   stderr=subprocess.STDOUT)
    scheme = "https" if tls else "http"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            import ssl

            ctx = ssl.create_default_context(cafile=str(ca)) if ca else None
            urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}/v2/", timeout=1, context=ctx)
            break
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                break
        except OSError:
            time.sleep(0.1)
    else:
        process.terminate()
        raise RuntimeError(f"registry did not start: {log_path.read_text()[-2000:]}")
    return Registry(f"127.0.0.1:{port}", log_path, process, ca, *(auth or (None, None)))
