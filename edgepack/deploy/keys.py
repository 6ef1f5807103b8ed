"""Scoring keys for local runs: generated on the host, kept in a 0600 file, never baked into an image.

Side effects: files under ``$EDGEPACK_HOME/runs/<name>/``. The folder is mounted read-only into the container,
and the in-image server re-reads the file when it changes, so one key is regenerated without a restart and
without touching the other.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from edgepack.errors import EdgepackError
from edgepack.runtime.files import write_atomic

KEY_NAMES = ("primary", "secondary", "master")
KEYS_FILE = "keys.json"


def new_key() -> str:
    """A fresh random key (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def _write(folder: Path, keys: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    # Private to the host user; the container's server runs as root and reads it through the mount.
    os.chmod(folder, 0o700)
    write_atomic(folder / KEYS_FILE, json.dumps(keys), mode=0o600)


def create_keys(folder: Path) -> dict[str, str]:
    """Write a new primary, secondary and master key into ``folder`` and return them."""
    keys = {name: new_key() for name in KEY_NAMES}
    _write(folder, keys)
    return keys


def read_keys(folder: Path) -> dict[str, str]:
    """Read the keys of a local run.

    Raises:
        EdgepackError: the run has no keys file (it was started without auth, or not by edgepack).
    """
    try:
        return json.loads((folder / KEYS_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise EdgepackError(f"reading keys of run '{folder.name}': {exc}",
                            hint="Check the name with 'docker ps'; runs started with --no-auth have no keys.") from exc


def regenerate_key(folder: Path, which: str) -> dict[str, str]:
    """Replace one key, keeping the others, and return the new set.

    Raises:
        EdgepackError: ``which`` is not a key name, or the run has no keys.
    """
    if which not in KEY_NAMES:
        raise EdgepackError(f"regenerating key '{which}': unknown key name",
                            hint=f"Use one of: {', '.join(KEY_NAMES)}.")
    keys = read_keys(folder)
    keys[which] = new_key()
    _write(folder, keys)
    return keys
