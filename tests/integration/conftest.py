"""Fixtures for tests against the real services that scripts/setup.sh installs and starts."""

from __future__ import annotations

import os
import subprocess
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


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


@pytest.fixture(autouse=True)
def _docker_host(monkeypatch):
    """Keep DOCKER_HOST and DOCKER_CONFIG as the machine has them (the root conftest clears the environment)."""
    yield
