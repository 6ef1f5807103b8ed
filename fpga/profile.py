"""Accelerator profiles: what a DPU or NPU takes, read from the data files in ``fpga/profiles/`` (build side).

A profile names the toolchain, the execution provider, the quantization the accelerator wants, the operators it
runs with their limits, the vendor base image, the provider's configuration and the documents it was taken from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from edgepack.errors import UnknownAcceleratorProfile

DEFAULT_PROFILE = "kv260-dpuczdx8g"


@dataclass(frozen=True)
class QuantRule:
    """The quantization an accelerator wants."""

    activation_type: str  # "int8" or "uint8"
    weight_type: str
    symmetric: bool
    power_of_two: bool
    per_channel: bool


@dataclass(frozen=True)
class Profile:
    """One accelerator profile (see the module docstring)."""

    name: str
    title: str
    toolchain: str
    accelerator: str
    provider: str
    max_opset: int
    quantization: QuantRule
    ops: dict[str, dict[str, Any]]
    not_on_accelerator: dict[str, str]
    fused_into_previous: tuple[str, ...]
    base_image: str | None
    base_image_note: str
    vaip_config: dict[str, Any]
    kubernetes: dict[str, str]
    sources: tuple[dict[str, str], ...]
    caveats: tuple[str, ...]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Profile":
        """A profile from its file's JSON (every field required)."""
        return cls(name=data["name"], title=data["title"], toolchain=data["toolchain"],
                   accelerator=data["accelerator"], provider=data["provider"], max_opset=int(data["max_opset"]),
                   quantization=QuantRule(**data["quantization"]), ops=dict(data["ops"]),
                   not_on_accelerator=dict(data["not_on_accelerator"]),
                   fused_into_previous=tuple(data["fused_into_previous"]), base_image=data["base_image"],
                   base_image_note=data["base_image_note"], vaip_config=dict(data["vaip_config"]),
                   kubernetes=dict(data["kubernetes"]), sources=tuple(data["sources"]),
                   caveats=tuple(data["caveats"]))

    def summary(self) -> dict[str, Any]:
        """What ``fpga profiles --json`` prints of it."""
        return {"name": self.name, "title": self.title, "toolchain": self.toolchain,
                "accelerator": self.accelerator, "provider": self.provider, "max_opset": self.max_opset,
                "quantization": self.quantization.__dict__, "ops": sorted(self.ops),
                "base_image": self.base_image, "sources": list(self.sources), "caveats": list(self.caveats)}


def _files() -> dict[str, Any]:
    folder = resources.files("fpga") / "profiles"
    return {entry.name[:-5]: entry for entry in folder.iterdir() if entry.name.endswith(".json")}


def profiles() -> tuple[Profile, ...]:
    """Every profile edgepack ships, by name."""
    return tuple(Profile.from_dict(json.loads(entry.read_text())) for _, entry in sorted(_files().items()))


def load_profile(name: str | None) -> Profile:
    """The profile called ``name`` (the default profile for None).

    Raises:
        UnknownAcceleratorProfile: no profile has that name.
    """
    name = name or DEFAULT_PROFILE
    files = _files()
    if name not in files:
        raise UnknownAcceleratorProfile(f"choosing accelerator profile '{name}': no such profile",
                              hint=f"Use one of: {', '.join(sorted(files))} (edgepack fpga profiles).")
    return Profile.from_dict(json.loads(files[name].read_text()))
