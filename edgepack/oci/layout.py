"""OCI image layout on disk (image-spec ``image-layout.md``): write one image atomically, read it back.

Side effects: files under the layout directory. A layout is written into a sibling temporary directory and
renamed into place, so an interrupted write never leaves a half-written layout under the requested name.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from edgepack.errors import EdgepackError
from edgepack.oci.descriptor import INDEX_TYPES, MANIFEST_TYPES, OCI_INDEX, OCI_MANIFEST, Descriptor

REF_NAME = "org.opencontainers.image.ref.name"


@dataclass(frozen=True)
class LayoutImage:
    """One image read from a layout: its manifest and where its blobs are."""

    root: Path
    manifest: bytes
    manifest_media_type: str
    manifest_digest: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    ref_name: str | None

    def blob_path(self, digest: str) -> Path:
        """Path of a blob inside the layout."""
        return self.root / "blobs" / "sha256" / digest.split(":", 1)[1]

    def open_blob(self, digest: str) -> BinaryIO:
        """Open a blob for reading."""
        return open(self.blob_path(digest), "rb")

    @property
    def blobs(self) -> tuple[Descriptor, ...]:
        """Config first, then layers: everything a push uploads before the manifest."""
        return (self.config, *self.layers)


def write_layout(out_dir: Path, *, manifest: bytes, manifest_digest: str, blobs: Iterable[tuple[str, Path]],
                 ref_name: str | None = None) -> None:
    """Write a single-image OCI layout to ``out_dir``, replacing an earlier layout there.

    Raises:
        EdgepackError: ``out_dir`` exists and is not an OCI layout (it is never overwritten then).
    """
    with staged_dir(out_dir, marker="oci-layout", what="image layout", option="--output") as staged:
        blob_dir = staged / "blobs" / "sha256"
        blob_dir.mkdir(parents=True)
        for digest, path in blobs:
            # copied, never linked: a layout shares no inode with the cache, so damage to one never reaches
            # the other
            shutil.copyfile(path, blob_dir / digest.split(":", 1)[1])
        (blob_dir / manifest_digest.split(":", 1)[1]).write_bytes(manifest)
        desc = Descriptor(OCI_MANIFEST, manifest_digest, len(manifest),
                          annotations={REF_NAME: ref_name} if ref_name else {})
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [desc.to_dict()]}
        (staged / "index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
        (staged / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}\n')


@contextmanager
def staged_dir(out_dir: Path, *, marker: str, what: str, option: str) -> Iterator[Path]:
    """Yield a temporary sibling of ``out_dir`` to fill; on success it replaces ``out_dir`` in one rename.

    ``out_dir`` may be missing, empty, or an earlier output of the same kind (it holds ``marker``); anything
    else is left untouched.

    Raises:
        EdgepackError: ``out_dir`` holds something else.
    """
    out_dir = out_dir.absolute()
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / marker).is_file():
        raise EdgepackError(f"writing {what} '{out_dir}': the directory exists and holds other files",
                            hint=f"Choose an empty or new directory for {option}.")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    try:
        yield staged
        replace_dir(staged, out_dir)
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def replace_dir(staged: Path, out_dir: Path) -> None:
    """Rename the fully written directory ``staged`` to ``out_dir``, replacing what was there.

    Readers see the old or the new content, never a mix.
    """
    if not out_dir.exists():
        os.rename(staged, out_dir)
        return
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    os.rename(out_dir, old)
    os.rename(staged, out_dir)
    shutil.rmtree(old, ignore_errors=True)


def read_layout(root: Path) -> LayoutImage:
    """Read the single image of an OCI layout (the first manifest of ``index.json``).

    Raises:
        EdgepackError: not a layout, or the manifest or a blob it names is missing.
    """
    hint = "Pass a directory written by 'edgepack package --output'."
    try:
        index = json.loads((root / "index.json").read_text())
        entry = Descriptor.from_dict(index["manifests"][0])
        manifest = (root / "blobs" / "sha256" / entry.digest.split(":", 1)[1]).read_bytes()
        data = json.loads(manifest)
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise EdgepackError(f"reading image layout '{root}': {exc}", hint=hint) from exc
    media = data.get("mediaType") or entry.media_type
    if media in INDEX_TYPES or media not in MANIFEST_TYPES:
        raise EdgepackError(f"reading image layout '{root}': unsupported manifest type '{media}'", hint=hint)
    image = LayoutImage(
        root=root, manifest=manifest, manifest_media_type=media, manifest_digest=entry.digest,
        config=Descriptor.from_dict(data["config"]),
        layers=tuple(Descriptor.from_dict(d) for d in data["layers"]),
        ref_name=entry.annotations.get(REF_NAME),
    )
    missing = [d.digest for d in image.blobs if not image.blob_path(d.digest).is_file()]
    if missing:
        raise EdgepackError(f"reading image layout '{root}': missing blobs {', '.join(missing)}", hint=hint)
    return image
