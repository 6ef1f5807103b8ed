"""ImagePlan: the pure description of an image to build; what most packager tests assert on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgepack.oci.layer import LayerSpec


@dataclass(frozen=True)
class PipLayer:
    """A layer of Python packages resolved by pip on the host for the image's platform at build time.

    The plan names what to resolve; the resolved set (and so the layer's digest) is fixed by the build
    and cached by a hash of that set.
    """

    name: str
    requirements: tuple[str, ...]
    dest: str
    comment: str = ""
    # Extra indexes and find-links URLs (``${VAR}`` parts are filled from the environment when resolving).
    index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    # Requirement names that came from conda channels, for messages about packages the index lacks.
    conda_packages: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON form for plans."""
        return {"name": self.name, "kind": "pip", "requirements": list(self.requirements), "dest": self.dest,
                "comment": self.comment, "index_urls": list(self.index_urls), "find_links": list(self.find_links)}


@dataclass(frozen=True)
class ImagePlan:
    """Everything needed to build an image: base, ordered layers and the config changes on top of the base.

    Layers are ordered from the one that changes least (dependencies) to the one that changes most (model
    files), so a model-only change rebuilds and pushes exactly one layer.
    """

    target: str
    base_image: str
    layers: tuple[LayerSpec | PipLayer, ...]
    env: dict[str, str] = field(default_factory=dict)
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    workdir: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    exposed_ports: tuple[int, ...] = ()
    platform: str = "linux/amd64"
    python_version: str | None = None
    local_command: tuple[str, ...] | None = None
    port: int = 5001

    def to_dict(self) -> dict[str, Any]:
        """JSON form, as printed by ``edgepack plan``."""
        return {
            "target": self.target,
            "base_image": self.base_image,
            "platform": self.platform,
            "python_version": self.python_version,
            "layers": [layer.to_dict() for layer in self.layers],
            "env": dict(sorted(self.env.items())),
            "entrypoint": list(self.entrypoint) if self.entrypoint is not None else None,
            "cmd": list(self.cmd) if self.cmd is not None else None,
            "workdir": self.workdir,
            "labels": dict(sorted(self.labels.items())),
            "exposed_ports": list(self.exposed_ports),
            "local_command": list(self.local_command) if self.local_command else None,
            "port": self.port,
        }
