"""Checking an image against its provenance: which recorded inputs differ from what is here now, and which layers
of a rebuild differ from the image's. Pure comparisons; ``api.verify`` reads the inputs and rebuilds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgepack.attest import record as rec
from edgepack.attest.record import Input, Layer


@dataclass(frozen=True)
class Difference:
    """One input or layer that is not what the provenance records."""

    what: str
    recorded: str
    found: str

    def __str__(self) -> str:
        return f"{self.what}: recorded {self.recorded}, found {self.found}"


def _local_digest(item: Input, model_digest: Callable[[str], str | None]) -> str | None:
    """The digest of ``item`` as it is on this machine now; None when it cannot be read here."""
    if item.kind == rec.MODEL:
        return model_digest(item.uri.removeprefix("model:"))
    path = Path(item.uri)
    if item.kind == rec.INFERENCE_CONFIG:
        return rec.file_digest(path) if path.is_file() else None
    if item.kind == rec.SOURCE_DIRECTORY:
        return rec.source_digest(path) if path.exists() else None
    return item.digest  # the base image is pulled by digest; the lock is checked through the rebuild


def changed_inputs(inputs: list[Input], model_digest: Callable[[str], str | None]) -> list[Difference]:
    """The recorded inputs whose local copy is missing or has another digest."""
    out = []
    for item in inputs:
        found = _local_digest(item, model_digest)
        if found != item.digest:
            out.append(Difference(f"{item.name or item.kind} ({item.uri})", item.digest,
                                  found or "nothing (not available on this machine)"))
    return out


def changed_layers(recorded: list[Layer], rebuilt: list[Layer]) -> list[Difference]:
    """Layers of the rebuild that differ from the recorded ones, by position and name."""
    out = []
    for i in range(max(len(recorded), len(rebuilt))):
        old = recorded[i] if i < len(recorded) else None
        new = rebuilt[i] if i < len(rebuilt) else None
        if old is None or new is None or old.digest != new.digest:
            name = (old or new).name  # type: ignore[union-attr]
            out.append(Difference(f"layer {i} ({name})", old.digest if old else "no layer",
                                  new.digest if new else "no layer"))
    return out
