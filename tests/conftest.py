"""Shared fixtures: a clean environment for every test, and a private EDGEPACK_HOME."""

from __future__ import annotations

import os

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


@pytest.fixture
def edgepack_home(tmp_path, monkeypatch):
    """A private EDGEPACK_HOME for one test."""
    home = tmp_path / "edgepack-home"
    monkeypatch.setenv("EDGEPACK_HOME", str(home))
    return home
