"""Shared fixtures: a clean environment for every test, a private EDGEPACK_HOME, and the real services that
scripts/setup.sh installs and starts (the Docker engine, the registry, Azurite)."""

from __future__ import annotations

import os
import sys
import subprocess
import urllib.request
from pathlib import Path

import pytest

_KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
         "PIP_CERT", "PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_DEFAULT_TIMEOUT",
         "PIP_DISABLE_PIP_VERSION_CHECK", "PYENV_ROOT", "DOCKER_HOST", "EDGEPACK_DEV_DIR", "VIRTUAL_ENV",
         "PYTHONPATH", "CURL_CA_BUNDLE", "CI")


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch):
    """Drop every variable a test did not ask for, so host settings (registry passwords included) never leak in."""
    for name in list(os.environ):
        if name not in _KEEP:
            monkeypatch.delenv(name, raising=False)
    yield


_ENGINE: list = []  # [client or None], asked once


def _engine():
    if not _ENGINE:
        try:
            import docker

            client = docker.from_env(timeout=10)
            client.ping()
            _ENGINE.append(client)
        except Exception:  # no engine here: nothing to clean
            _ENGINE.append(None)
    return _ENGINE[0]


@pytest.fixture(autouse=True)
def no_images_left_behind():
    """Remove the images a test added to the engine (``edgepack run`` loads one of 300-450 MB per layout), so
    the suite's disk use stays that of one test, not the sum of all of them. Images still in use stay."""
    client = _engine()
    if client is None:
        yield
        return
    before = {image.id for image in client.images.list()}
    yield
    for image in client.images.list():
        if image.id in before:
            continue
        for tag in image.tags or [image.id]:
            try:
                client.images.remove(tag, noprune=False)
            except Exception:  # in use by a container a fixture keeps, or already gone
                pass


@pytest.fixture
def edgepack_home(tmp_path, monkeypatch):
    """A private EDGEPACK_HOME for one test."""
    home = tmp_path / "edgepack-home"
    monkeypatch.setenv("EDGEPACK_HOME", str(home))
    return home


ROOT = Path(__file__).resolve().parents[1]


def _read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().split() if "=" in line)


def _services_up(env: dict[str, str]) -> bool:
    try:
        urllib.request.urlopen(f"http://{env['EDGEPACK_DEV_REGISTRY']}/v2/", timeout=3)
    except (OSError, KeyError):
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def dev_env() -> dict[str, str]:
    """The set-up's environment; runs scripts/setup.sh when the services do not answer."""
    path = Path(os.environ.get("EDGEPACK_DEV_DIR") or ROOT / ".dev") / "env"
    if not path.is_file() or not _services_up(_read_env(path)):
        subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh")], check=True)
    return _read_env(path)


@pytest.fixture(scope="session")
def dev_registry(dev_env) -> str:
    """The loopback registry (host:port)."""
    return dev_env["EDGEPACK_DEV_REGISTRY"]


@pytest.fixture(scope="session")
def base_image_ref(dev_env) -> str:
    """The locally made Debian bookworm + python3 base image."""
    return dev_env["EDGEPACK_DEV_BASE_IMAGE"]


@pytest.fixture(scope="session")
def functions_base_image_ref(dev_env) -> str:
    """The stand-in for the Azure Functions Python base image."""
    return dev_env["EDGEPACK_DEV_FUNCTIONS_BASE_IMAGE"]


@pytest.fixture(scope="session")
def docker_daemon(dev_env):
    """The real engine, through edgepack's adapter."""
    from edgepack.daemon import DockerDaemon

    return DockerDaemon()


@pytest.fixture
def start_broker():
    """Start local Service Bus brokers (``start_broker(["queue:max_delivery:lock_seconds", ...])``), stopped after."""
    from edgepack.devtools.servicebus import BrokerThread
    from tests.registry_server import free_port

    started = []

    def start(queues: list[str]):
        broker = BrokerThread(free_port(), queues).start()
        started.append(broker)
        return broker

    yield start
    for broker in started:
        broker.stop()


_EXIT: list[int] = []


def pytest_sessionfinish(session, exitstatus):
    _EXIT.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """End the process with the session's status once pytest is done: a thread a client library leaves running
    (not daemonic) must not keep a finished test run alive until CI's time runs out."""
    if _EXIT and not hasattr(config, "workerinput"):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT[-1])
