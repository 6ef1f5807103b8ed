"""ModelArtifact and its parts: pure values describing one registered model version."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgepack.runtime.model_artifact import model_content_sha256


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output: name, element type (``float32``, ``int64``...) and shape (None or a name if
    dynamic)."""

    name: str
    elem_type: str
    shape: tuple[int | str | None, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"name": self.name, "elem_type": self.elem_type, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TensorSpec":
        """Inverse of ``to_dict``."""
        return cls(data["name"], data["elem_type"], tuple(data["shape"]))


@dataclass(frozen=True)
class ModelFile:
    """A file of a model, relative to the model's root, with its content digest."""

    path: str
    sha256: str
    size: int


def content_sha256(files: tuple[ModelFile, ...]) -> str:
    """The model digest: sha256 over the sorted (path, file sha256) listing, the same on every machine."""
    return model_content_sha256([(f.path, f.sha256) for f in files])


@dataclass(frozen=True)
class ModelArtifact:
    """One registered version of a model."""

    name: str
    version: int
    sha256: str
    files: tuple[ModelFile, ...]
    root: Path
    format: str
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    description: str = ""
    created: str = ""
    # The registered folder's name when a folder was registered ("" for a file): Azure ML keeps it, so the
    # files are deployed under azureml-models/NAME/VERSION/<folder>/.
    folder: str = ""

    @property
    def ref(self) -> str:
        """``name:version``."""
        return f"{self.name}:{self.version}"

    @property
    def size(self) -> int:
        """Total bytes of the model's files."""
        return sum(f.size for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (stored as model.json, printed by ``model show``)."""
        return {
            "name": self.name, "version": self.version, "sha256": self.sha256, "format": self.format,
            "files": [{"path": f.path, "sha256": f.sha256, "size": f.size} for f in self.files],
            "inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs],
            "tags": dict(self.tags), "description": self.description, "created": self.created,
            "folder": self.folder,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], root: Path) -> "ModelArtifact":
        """Inverse of ``to_dict``; ``root`` is the folder holding the files."""
        return cls(
            name=data["name"], version=int(data["version"]), sha256=data["sha256"], format=data["format"],
            files=tuple(ModelFile(f["path"], f["sha256"], int(f["size"])) for f in data["files"]), root=root,
            inputs=tuple(TensorSpec.from_dict(t) for t in data.get("inputs", ())),
            outputs=tuple(TensorSpec.from_dict(t) for t in data.get("outputs", ())),
            tags=dict(data.get("tags", {})), description=data.get("description", ""), created=data.get("created", ""),
            folder=data.get("folder", ""),
        )
