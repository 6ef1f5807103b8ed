"""Registry credentials and auth challenges: docker config, credential helpers, Basic and Bearer tokens.

Side effects: reads the docker config file and runs ``docker-credential-<helper> get`` when one is configured;
the token flow's HTTP requests go through the client's transport. Secrets are never logged or put in messages.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgepack.errors import AuthenticationError


@dataclass(frozen=True)
class Credentials:
    """A user name and a secret (password or identity token)."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=<redacted>)"

    def basic(self) -> str:
        """The ``Authorization`` header value for Basic auth."""
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


def _config_path(env: dict[str, str]) -> Path:
    folder = env.get("DOCKER_CONFIG")
    return Path(folder) / "config.json" if folder else Path.home() / ".docker" / "config.json"


def _registry_keys(registry: str) -> list[str]:
    """The spellings a docker config may use for ``registry`` (``auths`` keys are often full URLs)."""
    keys = [registry, f"https://{registry}", f"http://{registry}", f"https://{registry}/v1/", f"https://{registry}/v2/"]
    if registry == "docker.io":
        keys += ["https://index.docker.io/v1/", "index.docker.io", "registry-1.docker.io"]
    return keys


def _from_helper(helper: str, registry: str) -> Credentials | None:
    program = f"docker-credential-{helper}"
    try:
        proc = subprocess.run([program, "get"], input=registry, capture_output=True, text=True, timeout=30)
    except FileNotFoundError as exc:
        raise AuthenticationError(f"reading credentials for '{registry}': '{program}' is not installed",
                                  hint=f"Install {program} or remove it from your docker config.") from exc
    except subprocess.TimeoutExpired as exc:
        raise AuthenticationError(f"reading credentials for '{registry}': '{program}' did not answer in 30s",
                                  hint="Unlock the credential store and try again.") from exc
    if proc.returncode != 0:
        if "credentials not found" in (proc.stdout + proc.stderr).lower():
            return None
        raise AuthenticationError(f"reading credentials for '{registry}': '{program}' failed "
                                  f"(exit {proc.returncode})", hint="Log in again with 'docker login'.")
    try:
        data = json.loads(proc.stdout)
        return Credentials(data["Username"], data["Secret"])
    except (ValueError, KeyError, TypeError) as exc:
        raise AuthenticationError(f"reading credentials for '{registry}': '{program}' gave an unreadable answer",
                                  hint="Log in again with 'docker login'.") from exc


def _from_auths(entry: dict) -> Credentials | None:
    if entry.get("auth"):
        try:
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return Credentials(user, password)
    if entry.get("username"):
        return Credentials(entry["username"], entry.get("password", ""))
    if entry.get("identitytoken"):
        return Credentials("<token>", entry["identitytoken"])
    return None


def find_credentials(registry: str, env: dict[str, str] | None = None) -> Credentials | None:
    """Credentials for ``registry`` from the environment or the docker config (``auths``, ``credHelpers``,
    ``credsStore``, in docker's order), or None for anonymous access.

    Raises:
        AuthenticationError: a configured credential helper is missing or fails.
    """
    env = dict(os.environ if env is None else env)
    if env.get("EDGEPACK_REGISTRY_USERNAME"):
        return Credentials(env["EDGEPACK_REGISTRY_USERNAME"], env.get("EDGEPACK_REGISTRY_PASSWORD", ""))
    try:
        config = json.loads(_config_path(env).read_text())
    except (OSError, ValueError):
        return None
    keys = _registry_keys(registry)
    helpers = config.get("credHelpers") or {}
    for key in keys:
        if key in helpers:
            return _from_helper(helpers[key], registry)
    auths = config.get("auths") or {}
    for key in keys:
        if key in auths and (creds := _from_auths(auths[key])):
            return creds
    if config.get("credsStore"):
        return _from_helper(config["credsStore"], registry)
    return None


@dataclass(frozen=True)
class Challenge:
    """A parsed ``WWW-Authenticate`` header."""

    scheme: str
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge:
    """Parse ``Bearer realm="...",service="...",scope="..."`` (or ``Basic realm=...``)."""
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}
    return Challenge(scheme.lower(), params)
