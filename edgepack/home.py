"""Where edgepack keeps its state on the host: the model store, the build cache and local runs' keys.

Pure paths; nothing is created until a command writes there. The root comes from ``EDGEPACK_HOME``
(read by the CLI, not here), default ``~/.edgepack``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Home:
    """The edgepack home directory and the places inside it."""

    root: Path

    @property
    def models(self) -> Path:
        """The local model store."""
        return self.root / "models"

    @property
    def cache(self) -> Path:
        """Blobs, built layers, resolved dependency sets, base-image facts."""
        return self.root / "cache"

    @property
    def hub(self) -> Path:
        """The local IoT hub's state: identities and twins, certificates, broker data, upstream messages."""
        return self.root / "hub"

    @property
    def runs(self) -> Path:
        """One folder per local run, holding its keys file (mounted read-only into the container)."""
        return self.root / "runs"
