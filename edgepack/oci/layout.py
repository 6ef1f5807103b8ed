"""OCI image layout on disk (image-spec ``image-layout.md``): write one image (one platform, or an index of
several) atomically, read it back.

Side effects: files under the layout directory. A layout is written into a sibling temporary directory and
renamed into place, so an interrupted write never leaves a half-written layout under the requested name.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator

from edgepack.errors import LayoutError
from edgepack.oci.descriptor import INDEX_TYPES, MANIFEST_TYPES, OCI_INDEX, OCI_MANIFEST, Descriptor, sha256_digest
from edgepack.oci.imageindex import host_platform, platform_name
from edgepack.oci.referrers import EMPTY, descriptor_of

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
                 ref_name: str | None = None, media_type: str = OCI_MANIFEST,
                 manifests: Iterable[bytes] = (), artifacts: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """Write an OCI layout of one image to ``out_dir``, replacing an earlier layout there. ``manifest`` is an
    image manifest, or (``media_type`` OCI_INDEX) an image index whose platforms' ``manifests`` are written too.
    ``artifacts`` ((artifact manifest, document) pairs: the SBOM and provenance) are listed in ``index.json``
    after the image, as referrers of it.

    Raises:
        LayoutError: ``out_dir`` exists and is not an OCI layout (it is never overwritten then).
    """
    with staged_dir(out_dir, marker="oci-layout", what="image layout", option="--output") as staged:
        blob_dir = staged / "blobs" / "sha256"
        blob_dir.mkdir(parents=True)
        for digest, path in blobs:
            # copied, never linked: a layout shares no inode with the cache, so damage to one never reaches
            # the other
            shutil.copyfile(path, blob_dir / digest.split(":", 1)[1])
        for child in manifests:
            (blob_dir / sha256_digest(child).split(":", 1)[1]).write_bytes(child)
        (blob_dir / manifest_digest.split(":", 1)[1]).write_bytes(manifest)
        desc = Descriptor(media_type, manifest_digest, len(manifest),
                          annotations={REF_NAME: ref_name} if ref_name else {})
        listed = [desc.to_dict()]
        for artifact, document in artifacts:
            for body in (EMPTY, document, artifact):
                (blob_dir / sha256_digest(body).split(":", 1)[1]).write_bytes(body)
            listed.append(descriptor_of(artifact).to_dict())
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": listed}
        (staged / "index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
        (staged / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}\n')


@contextmanager
def staged_dir(out_dir: Path, *, marker: str, what: str, option: str) -> Iterator[Path]:
    """Yield a temporary sibling of ``out_dir`` to fill; on success it replaces ``out_dir`` in one rename.

    ``out_dir`` may be missing, empty, or an earlier output of the same kind (it holds ``marker``); anything
    else is left untouched.

    Raises:
        LayoutError: ``out_dir`` holds something else.
    """
    out_dir = out_dir.absolute()
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / marker).is_file():
        raise LayoutError(f"writing {what} '{out_dir}': the directory exists and holds other files",
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


@dataclass(frozen=True)
class LayoutIndex:
    """A multi-platform image read from a layout: the index and each platform's image."""

    manifest: bytes
    manifest_digest: str
    ref_name: str | None
    images: dict[str, LayoutImage]  # platform (os/arch) → image


_HINT = "Pass a directory written by 'edgepack package --output'."


def _read_json(root: Path, entry: Descriptor) -> tuple[bytes, dict]:
    try:
        body = (root / "blobs" / "sha256" / entry.digest.split(":", 1)[1]).read_bytes()
        data = json.loads(body)
    except (OSError, ValueError, RecursionError) as exc:
        raise LayoutError(f"reading image layout '{root}': {exc}", hint=_HINT) from exc
    if not isinstance(data, dict):
        raise LayoutError(f"reading image layout '{root}': {entry.digest} is not a JSON object", hint=_HINT)
    return body, data


def _top(root: Path) -> tuple[Descriptor, bytes, dict]:
    try:
        index = json.loads((root / "index.json").read_text())
        entry = Descriptor.from_dict(index["manifests"][0])
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError, RecursionError) as exc:
        raise LayoutError(f"reading image layout '{root}': {exc}", hint=_HINT) from exc
    return (entry, *_read_json(root, entry))


def read_layout_index(root: Path) -> LayoutIndex | None:
    """The layout's image index when its image is multi-platform; None for a single-platform layout.

    Raises:
        LayoutError: as ``read_layout``.
    """
    entry, body, data = _top(root)
    return _index(root, entry, body, data) if (data.get("mediaType") or entry.media_type) in INDEX_TYPES else None


def _malformed(root: Path, what: str, exc: Exception) -> LayoutError:
    detail = f"no '{exc.args[0]}'" if isinstance(exc, KeyError) else str(exc)
    return LayoutError(f"reading image layout '{root}': its {what} is malformed ({detail})", hint=_HINT)


def _index(root: Path, entry: Descriptor, body: bytes, data: dict) -> LayoutIndex:
    images = {}
    try:
        children = [Descriptor.from_dict(item) for item in data.get("manifests") or []]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _malformed(root, f"image index {entry.digest}", exc) from None
    for child in children:
        images[platform_name(child.platform)] = _image(root, child, *_read_json(root, child))
    return LayoutIndex(body, entry.digest, entry.annotations.get(REF_NAME), images)


def read_layout(root: Path, platform: str | None = None) -> LayoutImage:
    """Read the image of an OCI layout (the first manifest of ``index.json``); of a multi-platform image, the
    one for ``platform`` (default: this machine's).

    Raises:
        LayoutError: not a layout, the manifest or a blob it names is missing, or no image for the platform.
    """
    entry, manifest, data = _top(root)
    if (data.get("mediaType") or entry.media_type) in INDEX_TYPES:
        index = _index(root, entry, manifest, data)
        wanted = platform or host_platform()
        if wanted not in index.images:
            raise LayoutError(f"reading image layout '{root}': it holds no image for {wanted}",
                                hint=f"It holds {', '.join(index.images) or 'none'}.")
        image = index.images[wanted]
        return replace(image, ref_name=image.ref_name or entry.annotations.get(REF_NAME))
    return _image(root, entry, manifest, data)


def _image(root: Path, entry: Descriptor, manifest: bytes, data: dict[str, Any]) -> LayoutImage:
    media = data.get("mediaType") or entry.media_type
    if media in INDEX_TYPES or media not in MANIFEST_TYPES:
        raise LayoutError(f"reading image layout '{root}': unsupported manifest type '{media}'", hint=_HINT)
    try:
        image = LayoutImage(
            root=root, manifest=manifest, manifest_media_type=media, manifest_digest=entry.digest,
            config=Descriptor.from_dict(data["config"]),
            layers=tuple(Descriptor.from_dict(d) for d in data["layers"]),
            ref_name=entry.annotations.get(REF_NAME),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _malformed(root, f"manifest {entry.digest}", exc) from None
    missing = [d.digest for d in image.blobs if not image.blob_path(d.digest).is_file()]
    if missing:
        raise LayoutError(f"reading image layout '{root}': missing blobs {', '.join(missing)}", hint=_HINT)
    return image


def layout_referrers(root: Path) -> list[tuple[Descriptor, dict[str, Any], bytes]]:
    """The artifacts ``index.json`` lists after the image: (descriptor, artifact manifest, document).

    Raises:
        LayoutError: not a layout, or an artifact or its document is missing.
    """
    try:
        entries = [Descriptor.from_dict(e) for e in json.loads((root / "index.json").read_text())["manifests"][1:]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise LayoutError(f"reading image layout '{root}': {exc}", hint=_HINT) from exc
    out = []
    for entry in entries:
        _, data = _read_json(root, entry)
        if "subject" not in data:
            continue
        try:
            layer = Descriptor.from_dict(data["layers"][0])
            document = (root / "blobs" / "sha256" / layer.digest.split(":", 1)[1]).read_bytes()
        except (OSError, KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise _malformed(root, f"artifact {entry.digest}", exc) from None
        out.append((entry, data, document))
    return out
