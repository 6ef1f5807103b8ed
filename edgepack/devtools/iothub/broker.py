"""mosquitto for the local hub: on loopback, plain behind the hub's gateway (which does TLS and checks tokens) or
TLS 1.2 with the hub's certificate; persistent sessions (the SDK never re-subscribes, so a broker that forgot
sessions would silently stop delivering inputs).

Side effects: a mosquitto process, its config, log and persistence files under the state folder.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path

from edgepack.devtools.iothub.certs import HubCertificates


class BrokerError(Exception):
    """mosquitto is missing or did not start."""


def _config(state: Path, port: int, certs: HubCertificates | None) -> str:
    tls = [f"cafile {certs.ca}", f"certfile {certs.cert}", f"keyfile {certs.key}", "tls_version tlsv1.2"] \
        if certs else []
    # set_tcp_nodelay: with Nagle's algorithm on (mosquitto's default) each small packet can wait for the last
    # one's delayed ACK; it held a module at about 250 messages/s
    return "\n".join([
        # started as root, mosquitto switches to its own user, which cannot read the hub's files: stay who we are
        f"user {getpass.getuser()}", "per_listener_settings false", "allow_anonymous true", "persistence true",
        f"persistence_location {state}/", "autosave_interval 1", f"log_dest file {state / 'mosquitto.log'}",
        "log_type error", "log_type warning", "log_type notice", "max_inflight_messages 20",
        "max_queued_messages 100000", "set_tcp_nodelay true", f"listener {port} 127.0.0.1", *tls, ""])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise BrokerError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


class Broker:
    """A mosquitto process on 127.0.0.1:``port`` (TLS when given ``certs``)."""

    def __init__(self, state: Path, certs: HubCertificates | None, port: int) -> None:
        self.state, self.certs, self.port = state, certs, port
        self.process: subprocess.Popen | None = None

    def start(self) -> "Broker":
        binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
        if binary is None:
            raise BrokerError("mosquitto is not installed (Debian: apt-get install mosquitto)")
        self.state.mkdir(parents=True, exist_ok=True)
        conf = self.state / "mosquitto.conf"
        conf.write_text(_config(self.state, self.port, self.certs))
        self.process = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        try:
            wait_for_port(self.port)
        except BrokerError:
            self.stop()
            raise BrokerError(f"mosquitto did not start; see {self.state / 'mosquitto.log'}") from None
        return self

    def restart(self, *, forget_sessions: bool = False) -> "Broker":
        """Stop and start again on the same port; ``forget_sessions`` also deletes the saved sessions, as a broker
        without persistence (or a failover to another one) would lose them."""
        self.stop()
        if forget_sessions:
            (self.state / "mosquitto.db").unlink(missing_ok=True)
        return self.start()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None
