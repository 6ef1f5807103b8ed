"""The local content-addressed cache: blobs by digest, built layers by content key, resolved dependency sets.

Side effects: files under the cache root (default ``$EDGEPACK_HOME/cache``). Every write goes to a temporary
file first and is renamed into place, so a crash never leaves a half-written blob under its digest.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

from edgepack.oci.integrity import intact, mark_verified
from edgepack.runtime.files import staged_file, write_atomic


class Cache:
    """A directory of blobs (``blobs/sha256/<hex>``) plus small JSON indexes keyed by content hashes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blob_dir = root / "blobs" / "sha256"
        self._sweep_stale()

    def _sweep_stale(self, older_than: float = 3600.0) -> None:
        """Remove temporary files a killed build left (written an hour or more ago: no live build owns them)."""
        if not self.blob_dir.is_dir():
            return
        cutoff = time.time() - older_than
        for tmp in self.blob_dir.glob(".tmp-*"):
            try:
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
            except OSError:
                pass

    def blob_path(self, digest: str) -> Path:
        """Where the blob with ``digest`` (``sha256:<hex>``) lives, present or not."""
        algo, _, hexpart = digest.partition(":")
        if algo != "sha256" or len(hexpart) != 64:
            raise ValueError(f"unsupported digest {digest!r}")
        return self.blob_dir / hexpart

    def has_blob(self, digest: str, size: int | None = None) -> bool:
        """True when the blob is in the cache and intact (a damaged one is removed; see edgepack.oci.integrity)."""
        return intact(self.blob_path(digest), digest, size)

    @contextmanager
    def new_blob(self) -> Iterator[tuple[BinaryIO, list[str]]]:
        """Open a temporary file for a blob whose digest is known only after writing.

        Yields ``(file, holder)``; the caller appends the final digest to ``holder`` and the file is renamed
        to that digest on a clean exit, or removed if anything raised.
        """
        holder: list[str] = []
        with staged_file(self.blob_dir) as (f, tmp):
            yield f, holder
            f.close()
            os.replace(tmp, self.blob_path(holder[0]))
        mark_verified(self.blob_path(holder[0]))

    def read_index(self, kind: str, key: str) -> dict | None:
        """Read a small JSON record, or None when absent or unreadable (it is then rebuilt)."""
        path = self.root / kind / f"{key}.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def write_index(self, kind: str, key: str, value: dict) -> None:
        """Write a small JSON record atomically."""
        write_atomic(self.root / kind / f"{key}.json", json.dumps(value, sort_keys=True))

    def dir_for(self, kind: str, key: str) -> Path:
        """A cached directory (for example an installed site-packages tree), present or not."""
        return self.root / kind / key

    def commit_dir(self, kind: str, key: str, staged: Path) -> Path:
        """Move a fully written directory into the cache under ``key``; an existing entry wins."""
        final = self.dir_for(kind, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(staged, final)
        except OSError:
            if not final.is_dir():
                raise
            shutil.rmtree(staged, ignore_errors=True)
        return final
