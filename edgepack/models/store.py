"""The local model store: ``<root>/<name>/<version>/`` holding ``files/`` and a model.json. Side effects: files.

Versions are claimed with an atomic ``mkdir`` of a hidden staging folder per version, so two registrations
of the same name never get the same version; a version folder appears (by rename) only once complete.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping, Protocol

from edgepack.errors import InvalidModel, ModelError, ModelNotFound
from edgepack.models.artifact import ModelArtifact, ModelFile, TensorSpec, content_sha256
from edgepack.models.inspect import inspect_onnx
from edgepack.oci.layer import file_sha256

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{0,254}$")
METADATA = "model.json"
FILES = "files"  # the model's own files live below here, so one named model.json stays the user's


class ModelStore(Protocol):
    """Where registered models live."""

    def register(self, name: str, path: Path, *, tags: Mapping[str, str] = ..., description: str = "",
                 version: int | None = None) -> ModelArtifact:
        """Register ``path`` as the next version of ``name`` (or as ``version``)."""

    def get(self, name: str, version: int | None = None) -> ModelArtifact:
        """One version (the latest when ``version`` is None)."""

    def list(self) -> list[ModelArtifact]:
        """Every version of every model."""

    def delete(self, name: str, version: int | None = None) -> None:
        """Delete one version, or all."""


def parse_model_ref(ref: str) -> tuple[str, int | None]:
    """Split ``name[:version]``.

    Raises:
        ModelError: the name or version is malformed.
    """
    name, sep, version = ref.partition(":")
    if not _NAME.fullmatch(name):
        raise ModelError(f"reading model reference '{ref}': invalid model name",
                         hint="Use letters, digits, '.', '_' and '-', starting with a letter or digit.")
    if not sep:
        return name, None
    if not (version.isascii() and version.isdigit()) or int(version) < 1:
        raise ModelError(f"reading model reference '{ref}': version must be a positive integer",
                         hint="Write NAME or NAME:VERSION, for example digits:2.")
    return name, int(version)


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ModelError(f"naming model {name!r}: invalid model name",
                         hint="Use letters, digits, '.', '_' and '-', starting with a letter or digit.")


def _collect(path: Path) -> list[tuple[str, Path]]:
    """(relative path, file) pairs of a file or folder, refusing links, special files and escapes."""
    if path.is_symlink():
        raise InvalidModel(f"registering model '{path}': symbolic links are not followed",
                           hint="Register the file or folder the link points to.")
    if path.is_file():
        return [(path.name, path)]
    root = path.resolve()
    out = []
    for item in sorted(path.rglob("*")):
        rel = item.relative_to(path).as_posix()
        if item.is_symlink():
            raise InvalidModel(f"registering model '{path}': '{rel}' is a symbolic link",
                               hint="Replace links with the files themselves.")
        mode = item.lstat().st_mode
        if stat.S_ISDIR(mode):
            continue
        if not stat.S_ISREG(mode) or not item.resolve().is_relative_to(root):
            raise InvalidModel(f"registering model '{path}': '{rel}' is not a regular file inside the folder",
                               hint="Keep only regular files in a model folder.")
        out.append((rel, item))
    if not out:
        raise InvalidModel(f"registering model '{path}': the folder has no files",
                           hint="Point at a model file or folder.")
    return out


def describe_path(name: str, path: Path, version: int | None = None) -> ModelArtifact:
    """A model read in place from a file or folder, without registering it (a v2 deployment's ``model.path``).

    Raises:
        ModelError, InvalidModel: as ``register``.
    """
    _check_name(name)
    if not path.exists():
        raise ModelError(f"reading model '{name}': '{path}' does not exist", hint="Check the model's path.")
    sources = _collect(path)
    files = tuple(ModelFile(rel, file_sha256(src), src.stat().st_size) for rel, src in sources)
    return ModelArtifact(name=name, version=version or 1, sha256=content_sha256(files), files=files,
                         root=path if path.is_dir() else path.parent, format="files",
                         folder=path.resolve().name if path.is_dir() else "", description=f"read from {path}")


class LocalModelStore:
    """Models in a local directory (``$EDGEPACK_HOME/models`` by default): the embedded store, no server."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _versions(self, name: str) -> list[int]:
        folder = self.root / name
        if not folder.is_dir():
            return []
        return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and (p / METADATA).is_file())

    def _claim(self, name: str, wanted: int | None = None) -> tuple[int, Path]:
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        if wanted is not None:
            if wanted < 1:
                raise ModelError(f"registering model '{name}:{wanted}': versions start at 1",
                                 hint="Give a positive version number.")
            staging = folder / f".{wanted}-staging"
            try:
                staging.mkdir()
            except FileExistsError:
                raise ModelError(f"registering model '{name}:{wanted}': another registration of it is under way",
                                 hint="Wait for it to finish, then try again.") from None
            if (folder / str(wanted)).exists():
                staging.rmdir()
                raise ModelError(f"registering model '{name}:{wanted}': that version exists already",
                                 hint=f"Delete it first ('edgepack model delete {name}:{wanted}').")
            return wanted, staging
        taken = {int(p.name.lstrip(".").split("-")[0]) for p in folder.iterdir()
                 if p.name.lstrip(".").split("-")[0].isdigit()}
        version = max(taken, default=0) + 1
        while True:
            staging = folder / f".{version}-staging"
            try:
                staging.mkdir()
            except FileExistsError:
                version += 1
                continue
            if (folder / str(version)).exists():
                staging.rmdir()
                version += 1
                continue
            return version, staging

    def register(self, name: str, path: Path, *, tags: Mapping[str, str] | None = None,
                 description: str = "", version: int | None = None) -> ModelArtifact:
        """Copy ``path`` (a file or folder) into the store as the next version of ``name`` (or as ``version``,
        which must not exist yet: models pulled from a registry keep their version).

        Raises:
            ModelError: bad name, or the path does not exist.
            InvalidModel: links, special files, or an ONNX file that fails onnx.checker.
        """
        _check_name(name)
        if not path.exists() and not path.is_symlink():
            raise ModelError(f"registering model '{name}': '{path}' does not exist",
                             hint="Check the path to the model file or folder.")
        sources = _collect(path)
        onnx_files = [src for rel, src in sources if rel.endswith(".onnx")]
        inputs: tuple[TensorSpec, ...] = ()
        outputs: tuple[TensorSpec, ...] = ()
        if len(onnx_files) == 1:
            inputs, outputs = inspect_onnx(onnx_files[0])
        version, staging = self._claim(name, version)
        try:
            files = []
            for rel, src in sources:
                dest = staging / FILES / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dest)
                files.append(ModelFile(rel, file_sha256(dest), dest.stat().st_size))
            files_t = tuple(files)
            final = self.root / name / str(version)
            artifact = ModelArtifact(
                name=name, version=version, sha256=content_sha256(files_t), files=files_t, root=final / FILES,
                format="onnx" if len(onnx_files) == 1 else "files", inputs=inputs, outputs=outputs,
                tags=dict(tags or {}), description=description,
                created=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                folder=path.resolve().name if path.is_dir() else "")
            (staging / METADATA).write_text(json.dumps(artifact.to_dict(), indent=2))
            os.rename(staging, final)
            return artifact
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def get(self, name: str, version: int | None = None) -> ModelArtifact:
        """Raises: ModelNotFound, naming the versions that exist; ModelError for a malformed name."""
        _check_name(name)
        versions = self._versions(name)
        if not versions:
            raise ModelNotFound(f"finding model '{name}': no such model in {self.root}",
                                hint="Register it with 'edgepack model register NAME PATH'.")
        chosen = versions[-1] if version is None else version
        if chosen not in versions:
            raise ModelNotFound(f"finding model '{name}:{version}': no such version",
                                hint=f"Available versions: {', '.join(map(str, versions))}.")
        folder = self.root / name / str(chosen)
        return ModelArtifact.from_dict(json.loads((folder / METADATA).read_text()), root=folder / FILES)

    def list(self) -> list[ModelArtifact]:
        """Every version of every model, by name then version."""
        if not self.root.is_dir():
            return []
        return [self.get(p.name, v) for p in sorted(self.root.iterdir())
                if p.is_dir() and _NAME.fullmatch(p.name) for v in self._versions(p.name)]

    def delete(self, name: str, version: int | None = None) -> None:
        """Raises: ModelNotFound."""
        targets = ([self.get(name, version)] if version is not None
                   else [self.get(name, v) for v in self._versions(name)])
        if not targets:
            self.get(name)
        for artifact in targets:
            shutil.rmtree(artifact.root.parent)

    def download(self, name: str, version: int | None, dest: Path) -> ModelArtifact:
        """Copy a version's files into ``dest`` (created; must be empty if it exists).

        Raises:
            ModelNotFound, ModelError: unknown version, or ``dest`` is not empty.
        """
        artifact = self.get(name, version)
        if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
            raise ModelError(f"downloading '{artifact.ref}' to '{dest}': the destination exists and is not empty",
                             hint="Choose a new or empty directory.")
        for f in artifact.files:
            target = dest / f.path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(artifact.root / f.path, target)
        return artifact

    def verify(self, artifact: ModelArtifact) -> bool:
        """Re-hash the stored files; True when they still match the registered digests."""
        return all(file_sha256(artifact.root / f.path) == f.sha256 for f in artifact.files)
