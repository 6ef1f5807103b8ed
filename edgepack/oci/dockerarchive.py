"""docker-archive streams from OCI layouts: what ``docker load`` accepts (Docker 20.10 refuses OCI layouts).

Side effect: writes a tar to the given file object; blobs are streamed from the layout, not copied to disk.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import BinaryIO

from edgepack.oci.layout import read_layout


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def write_docker_archive(layout_dir: Path, tag: str, out: BinaryIO, platform: str | None = None) -> None:
    """Write the layout's image (of a multi-platform layout, the one for ``platform``, default this machine's)
    as a docker-archive tar tagged ``tag`` (gzip layers are loaded as they are).

    Raises:
        EdgepackError: the layout is not readable (from ``read_layout``).
    """
    image = read_layout(layout_dir, platform)
    blob_name = lambda digest: f"blobs/sha256/{digest.split(':', 1)[1]}"  # noqa: E731
    manifest = [{"Config": blob_name(image.config.digest), "RepoTags": [tag],
                 "Layers": [blob_name(d.digest) for d in image.layers]}]
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, "manifest.json", json.dumps(manifest).encode())
        seen = set()
        for desc in image.blobs:
            if desc.digest in seen:
                continue
            seen.add(desc.digest)
            tar.add(image.blob_path(desc.digest), arcname=blob_name(desc.digest), recursive=False)
