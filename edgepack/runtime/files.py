"""Writing files so that a reader sees the old content or the new, never a part: a temporary file in the same
folder, renamed over the target once complete, and removed if anything fails first. Used by the build cache,
the local run keys and the on-device agent alike."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator


@contextmanager
def staged_file(folder: Path) -> Iterator[tuple[BinaryIO, Path]]:
    """A new temporary file in ``folder`` (created if missing), open for binary writing: yields ``(file, path)``.

    The caller moves it into place with ``os.replace`` after the ``with`` block's writes, or within it after
    closing; whatever is still at ``path`` when the block exits (normally or by an exception) is removed.
    """
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f, path
    finally:
        path.unlink(missing_ok=True)


def write_atomic(path: Path, data: bytes | str, *, mode: int | None = None, fsync: bool = False) -> None:
    """Replace ``path`` with ``data`` in one step; ``mode`` sets its permission bits before it appears, and
    ``fsync`` makes the content durable before the rename (for state that must survive a power cut)."""
    with staged_file(path.parent) as (f, tmp):
        f.write(data.encode() if isinstance(data, str) else data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
        f.close()
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
