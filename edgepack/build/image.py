"""Image assembly: turn an ImagePlan plus a pulled base into layer blobs, an image config and a manifest.

Side effects: writes layer blobs into the cache (each built once per content key). No daemon is involved;
the same plan, base and mtime always give the same manifest digest.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Callable

from edgepack.build.cache import Cache
from edgepack.errors import PackagingError
from edgepack.oci.descriptor import (DOCKER_LAYER_GZIP, OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, Descriptor,
                                     sha256_digest)
from edgepack.oci.layer import CODEC, LayerSpec, write_layer
from edgepack.oci.plan import ImagePlan, PipLayer

log = logging.getLogger(__name__)

# A pip layer is turned into (content key, a function making its LayerSpec) by the caller, which owns
# resolution and its cache; the spec is made (and its files hashed) only when the layer is not cached yet.
PipMaterializer = Callable[[PipLayer], tuple[str, Callable[[], LayerSpec]]]


@dataclass(frozen=True)
class BuiltImage:
    """A built image whose blobs all sit in the cache: ready to write as a layout or to push."""

    manifest: bytes
    manifest_digest: str
    config: bytes
    config_descriptor: Descriptor
    layers: tuple[Descriptor, ...]
    new_layers: tuple[Descriptor, ...]
    base_ref: str
    cache: Cache

    @property
    def blobs(self) -> tuple[Descriptor, ...]:
        """Config first, then every layer."""
        return (self.config_descriptor, *self.layers)

    def blob_path(self, digest: str) -> Path:
        """Where a blob of this image is cached."""
        return self.cache.blob_path(digest)

    def open_blob(self, digest: str) -> BinaryIO:
        """Open a blob of this image for reading."""
        return open(self.blob_path(digest), "rb")


def _rfc3339(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _build_layer(key: str, name: str, make_spec: Callable[[], LayerSpec], cache: Cache,
                 mtime: int) -> tuple[Descriptor, str]:
    """Return (descriptor, diff_id) of a layer, building it only when the cache lacks it."""
    key = hashlib.sha256(f"{key}:{CODEC}".encode()).hexdigest()  # another compressor, other bytes
    record = cache.read_index("layers", key)
    if record and cache.has_blob(record["digest"], record.get("size")):
        log.info("layer %s: cached %s", name, record["digest"][:19])
        return Descriptor(OCI_LAYER_GZIP, record["digest"], record["size"]), record["diff_id"]
    started = time.monotonic()
    spec = make_spec()
    try:
        with cache.new_blob() as (f, holder):
            written = write_layer(spec, f, mtime=mtime)
            holder.append(written.digest)
    except OSError as exc:
        raise PackagingError(f"writing layer '{spec.name}': {exc}",
                             hint="Check that the files still exist and are readable.") from exc
    cache.write_index("layers", key, {"digest": written.digest, "diff_id": written.diff_id, "size": written.size})
    log.info("layer %s: built %s (%d bytes) in %.2fs", spec.name, written.digest[:19], written.size,
             time.monotonic() - started)
    return Descriptor(OCI_LAYER_GZIP, written.digest, written.size), written.diff_id


def _image_config(base_config: dict[str, Any], plan: ImagePlan, diff_ids: list[str],
                  comments: list[str], mtime: int) -> dict[str, Any]:
    config = json.loads(json.dumps(base_config))  # deep copy of plain JSON
    cfg = config.setdefault("config", {}) or {}
    config["config"] = cfg
    env = {e.split("=", 1)[0]: e.split("=", 1)[1] if "=" in e else "" for e in cfg.get("Env") or []}
    env.update(plan.env)
    cfg["Env"] = [f"{k}={v}" for k, v in env.items()]
    if plan.entrypoint is not None:
        cfg["Entrypoint"] = list(plan.entrypoint)
        cfg["Cmd"] = list(plan.cmd) if plan.cmd is not None else None
    elif plan.cmd is not None:
        cfg["Cmd"] = list(plan.cmd)
    if plan.workdir:
        cfg["WorkingDir"] = plan.workdir
    cfg["Labels"] = {**(cfg.get("Labels") or {}), **plan.labels}
    if plan.exposed_ports:
        cfg["ExposedPorts"] = {**(cfg.get("ExposedPorts") or {}), **{f"{p}/tcp": {} for p in plan.exposed_ports}}
    created = _rfc3339(mtime)
    config["created"] = created
    rootfs = config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    rootfs["diff_ids"] = list(rootfs.get("diff_ids") or []) + diff_ids
    history = list(config.get("history") or [])
    history += [{"created": created, "created_by": f"edgepack: {c}", "comment": "edgepack"} for c in comments]
    config["history"] = history
    return config


def build_image(plan: ImagePlan, *, base: Any, cache: Cache, mtime: int,
                materialize_pip: PipMaterializer) -> BuiltImage:
    """Build every layer of ``plan`` on top of the pulled ``base`` and assemble the config and manifest.

    ``base`` is a pulled image (``edgepack.registry`` ``PulledImage``) whose blobs are in ``cache``.

    Raises:
        PackagingError: a layer could not be written, or dependencies could not be resolved.
    """
    new_layers: list[Descriptor] = []
    diff_ids: list[str] = []
    comments: list[str] = []
    for layer in plan.layers:
        if isinstance(layer, PipLayer):
            key, make_spec = materialize_pip(layer)
        else:
            key, make_spec = layer.key(mtime), functools.partial(lambda spec: spec, layer)
        desc, diff_id = _build_layer(key, layer.name, make_spec, cache, mtime)
        new_layers.append(desc)
        diff_ids.append(diff_id)
        comments.append(layer.comment or layer.name)
    config = _image_config(base.config, plan, diff_ids, comments, mtime)
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    config_desc = Descriptor(OCI_CONFIG, sha256_digest(config_bytes), len(config_bytes))
    with cache.new_blob() as (f, holder):
        f.write(config_bytes)
        holder.append(config_desc.digest)
    base_layers = [Descriptor(OCI_LAYER_GZIP if d.media_type == DOCKER_LAYER_GZIP else d.media_type, d.digest, d.size)
                   for d in base.layers]
    layers = (*base_layers, *new_layers)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_desc.to_dict(),
        "layers": [d.to_dict() for d in layers],
        "annotations": {
            "org.opencontainers.image.base.digest": base.ref.digest or "",
            "org.opencontainers.image.base.name": str(base.ref).split("@", 1)[0],
        },
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    return BuiltImage(manifest=manifest_bytes, manifest_digest=sha256_digest(manifest_bytes), config=config_bytes,
                      config_descriptor=config_desc, layers=layers, new_layers=tuple(new_layers),
                      base_ref=str(base.ref), cache=cache)
