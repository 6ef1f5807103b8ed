"""A rollout's persisted state and the lease that lets one controller act on it (the only I/O of the core).

The state is one JSON file per rollout under ``$EDGEPACK_HOME/fleet/``, replaced atomically (written beside,
fsynced, renamed), so a controller killed at any point leaves the last complete state. Every step the controller
takes is numbered and recorded before it is sent, and the steps are idempotent, so a restarted controller sends
the last one again at worst, never a different one. The lease is an exclusive ``flock`` on the rollout's lock
file: the kernel drops it when its holder dies, so a killed controller never blocks the next; the holder's pid
and host are written into the lock file for ``fleet status``.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from edgepack.errors import FleetError, LeaseHeld
from edgepack.fleet.spec import check_name


class RolloutStore:
    """The rollouts of one edgepack home."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, name: str) -> Path:
        return self.folder / f"{check_name(name)}.json"

    def exists(self, name: str) -> bool:
        """Whether a rollout of that name was started here."""
        return self._path(name).is_file()

    def create(self, name: str, state: dict[str, Any]) -> None:
        """Record a new rollout.

        Raises:
            FleetError: the name is in use.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(name)
        partial = self._write_partial(path, state)
        try:
            os.link(partial, path)  # in place whole, or not at all: a name is never taken by a half-written file
        except FileExistsError:
            raise FleetError(f"starting rollout '{name}': the name is in use",
                             hint=f"Choose another name, or follow it with 'edgepack fleet status {name}'.") from None
        finally:
            partial.unlink(missing_ok=True)

    def load(self, name: str) -> dict[str, Any]:
        """A rollout's state.

        Raises:
            FleetError: no such rollout, or its file is damaged.
        """
        path = self._path(name)
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise FleetError(f"reading rollout '{name}': no such rollout",
                             hint="'edgepack fleet status' lists the rollouts.") from None
        except ValueError as exc:
            raise FleetError(f"reading rollout '{name}': {path} is damaged: {exc}",
                             hint="Restore it from a backup or start the rollout under a new name.") from exc

    def names(self) -> list[str]:
        """Every rollout's name."""
        return sorted(p.stem for p in self.folder.glob("*.json")) if self.folder.is_dir() else []

    @staticmethod
    def _write_partial(path: Path, state: dict[str, Any]) -> Path:
        partial = path.with_suffix(f".json.{os.getpid()}.partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(state, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        return partial

    def save(self, name: str, state: dict[str, Any]) -> None:
        """Replace the rollout's state atomically."""
        path = self._path(name)
        os.replace(self._write_partial(path, state), path)

    @contextmanager
    def lease(self, name: str) -> Iterator[None]:
        """Hold the rollout's lease while the block runs.

        Raises:
            LeaseHeld: another controller holds it (its pid and host are named).
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        lock = self.folder / f"{check_name(name)}.lock"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
                raise LeaseHeld(f"controlling rollout '{name}': {holder} holds its lease",
                                hint="One controller acts on a rollout at a time; stop the other one first.") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
            yield
        finally:
            os.close(fd)  # drops the lock
