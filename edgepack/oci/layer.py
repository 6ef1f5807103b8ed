"""Deterministic image layers: a layer is described by pure values and written as a reproducible gzip tar.

Writing a layer is the only side effect here (``write_layer`` streams to a file). The same entries always
give the same bytes: entries are sorted, parent directories are added explicitly, owners are 0:0 with no
names, every mtime is the same fixed value, and gzip carries no name and a zero timestamp.

Compression is ISA-L's igzip (through the ``isal`` bindings) at level 1: about 20 times zlib's speed on model
weights, which do not compress much, at a ratio as good as zlib's level 6. Its output depends on the input, the
level, the ISA-L version and the build host's family, not on the CPU model within a family: every x86-64 CPU
with SSE4.2 (AVX-512, AVX2 and SSE4.2-only ones give the same bytes) is one family, every arm64 CPU another
(with or without SVE); an x86-64 and an arm64 build host give different, equally valid, bytes, and so does an
x86-64 CPU without SSE4.2. ``CODEC`` names the compressor and is part of every built layer's cache key, so
another ISA-L gives a fresh layer, not a stale one; ``host_family`` is recorded in each image's provenance.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import isal
from isal import igzip

DEFAULT_MODE = 0o644
EXEC_MODE = 0o755
_COPY_CHUNK = 1 << 20
LEVEL = 1
CODEC = f"gzip/isal-{isal.__version__}/{LEVEL}"


@dataclass(frozen=True)
class FileEntry:
    """One regular file in a layer: where it goes in the image and where its bytes come from.

    Exactly one of ``source`` (a host path) and ``data`` (inline bytes) is set. ``sha256`` is the hex digest
    of the content, so a layer's identity is known without reading the files again.
    """

    dest: str
    sha256: str
    size: int
    mode: int = DEFAULT_MODE
    source: str | None = None
    data: bytes | None = None

    @classmethod
    def from_bytes(cls, dest: str, data: bytes, *, mode: int = DEFAULT_MODE) -> "FileEntry":
        """Make an entry holding ``data`` inline (generated files: configs, templates)."""
        return cls(dest=dest, sha256=hashlib.sha256(data).hexdigest(), size=len(data), mode=mode, data=data)

    @classmethod
    def from_file(cls, dest: str, source: Path, *, sha256: str | None = None) -> "FileEntry":
        """Make an entry copied from a host file; hashes it unless ``sha256`` is already known."""
        size = source.stat().st_size
        digest = sha256 or file_sha256(source)
        mode = EXEC_MODE if source.stat().st_mode & 0o111 else DEFAULT_MODE
        return cls(dest=dest, sha256=digest, size=size, mode=mode, source=str(source))

    def to_dict(self) -> dict:
        """JSON form for plans: where, what digest, how large, and from where."""
        out = {"dest": self.dest, "sha256": self.sha256, "size": self.size, "mode": oct(self.mode)}
        out["source"] = self.source if self.source is not None else "<generated>"
        return out


@dataclass(frozen=True)
class LayerSpec:
    """An ordered, named set of files that becomes one image layer."""

    name: str
    entries: tuple[FileEntry, ...]
    comment: str = ""

    def key(self, mtime: int) -> str:
        """A content key for caching: the same key always builds the same layer bytes."""
        canon = [(e.dest, e.sha256, e.size, e.mode) for e in sorted(self.entries, key=lambda e: e.dest)]
        blob = json.dumps({"v": 1, "mtime": mtime, "entries": canon}, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def to_dict(self) -> dict:
        """JSON form for plans."""
        return {
            "name": self.name,
            "comment": self.comment,
            "files": len(self.entries),
            "bytes": sum(e.size for e in self.entries),
            "entries": [e.to_dict() for e in sorted(self.entries, key=lambda e: e.dest)],
        }


@dataclass(frozen=True)
class WrittenLayer:
    """The result of writing a layer: compressed digest and size, and the uncompressed diff id."""

    digest: str
    diff_id: str
    size: int


def host_family() -> str:
    """The build host's family for ISA-L's output: ``x86-64`` (with SSE4.2), ``x86-64-nosse4.2``, or the
    machine name (``aarch64``)."""
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64"):
        return machine
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "x86-64"
    return "x86-64" if "sse4_2" in flags else "x86-64-nosse4.2"


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_COPY_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def entries_from_dir(root: Path, dest_root: str) -> tuple[FileEntry, ...]:
    """Entries for every regular file under ``root``, placed under ``dest_root`` in the image.

    Symbolic links and special files are skipped on purpose: a layer must not depend on what a link points
    to on the build host.
    """
    out = []
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        rel = path.relative_to(root).as_posix()
        out.append(FileEntry.from_file(str(PurePosixPath(dest_root) / rel), path))
    return tuple(out)


class _HashingWriter(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through it to ``target``."""

    def __init__(self, target: BinaryIO) -> None:
        self._target = target
        self.hash = hashlib.sha256()
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        view = memoryview(b)
        self.hash.update(view)
        self._target.write(view)
        self.count += len(view)
        return len(view)


def _dir_names(entries: tuple[FileEntry, ...]) -> list[str]:
    """Every parent directory of every entry, without the root, sorted."""
    dirs: set[str] = set()
    for e in entries:
        for parent in PurePosixPath(e.dest.lstrip("/")).parents:
            if str(parent) != ".":
                dirs.add(str(parent))
    return sorted(dirs)


def _tarinfo(name: str, *, mtime: int, mode: int, size: int = 0, is_dir: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
    info.mode = mode
    info.size = size
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_layer(spec: LayerSpec, out: BinaryIO, *, mtime: int) -> WrittenLayer:
    """Write ``spec`` as a gzip-compressed tar to ``out`` and return its digests.

    Raises:
        OSError: a source file could not be read (callers translate it with the layer's name).
    """
    compressed = _HashingWriter(out)
    with igzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=LEVEL) as gz:
        plain = _HashingWriter(gz)  # type: ignore[arg-type]
        with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for d in _dir_names(spec.entries):
                tar.addfile(_tarinfo(d, mtime=mtime, mode=EXEC_MODE, is_dir=True))
            for e in sorted(spec.entries, key=lambda e: e.dest):
                info = _tarinfo(e.dest.lstrip("/"), mtime=mtime, mode=e.mode, size=e.size)
                if e.data is not None:
                    tar.addfile(info, io.BytesIO(e.data))
                else:
                    with open(e.source, "rb") as f:  # type: ignore[arg-type]
                        tar.addfile(info, f)
    return WrittenLayer(
        digest="sha256:" + compressed.hash.hexdigest(),
        diff_id="sha256:" + plain.hash.hexdigest(),
        size=compressed.count,
    )
