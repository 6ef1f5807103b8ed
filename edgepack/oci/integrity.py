"""Is a stored blob still what its digest says? Checked whenever a cached blob is about to be used again.

A blob that was verified in full gets a stamp beside it (``.<hex>.ok``: its size, inode and modification
time). While the file's stat still matches the stamp the blob is trusted without reading it; any change to
the file (a write, a truncation, a replacement) breaks the match and it is hashed again. A blob that does not
hash to its digest, or has the wrong size, is removed, so it is fetched or rebuilt instead of shipped.

Side effects: reads blobs, writes and removes stamps and bad blobs.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def _stamp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.ok")


def _stat_line(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size} {st.st_ino} {st.st_mtime_ns}"


def mark_verified(path: Path) -> None:
    """Record that ``path`` was just written or hashed and matches its digest."""
    _stamp_path(path).write_text(_stat_line(path))


def file_digest(path: Path) -> str:
    """``sha256:<hex>`` of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def intact(path: Path, digest: str, size: int | None = None) -> bool:
    """True when the blob at ``path`` exists with ``size`` (if given) and hashes to ``digest``; a damaged blob
    is removed (and False returned)."""
    try:
        line = _stat_line(path)
    except OSError:
        return False
    if size is not None and int(line.split()[0]) != size:
        log.warning("cached blob %s has %s bytes, not %d: removed, it is fetched or built again",
                    digest[:19], line.split()[0], size)
        _evict(path)
        return False
    stamp = _stamp_path(path)
    try:
        if stamp.read_text() == line:
            return True
    except OSError:
        pass
    if file_digest(path) != digest:
        log.warning("cached blob %s does not match its digest: removed, it is fetched or built again", digest[:19])
        _evict(path)
        return False
    mark_verified(path)
    return True


def _evict(path: Path) -> None:
    for victim in (path, _stamp_path(path)):
        try:
            victim.unlink()
        except FileNotFoundError:
            pass
