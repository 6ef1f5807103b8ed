"""The ``io.edgepack.*`` labels of an image: how to start and probe it, which target and models it holds.

One typed definition: the packagers write it (``to_labels``) and ``edgepack run`` reads it (``from_labels``),
whatever the target, so an image tells by itself how it runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

PREFIX = "io.edgepack."


@dataclass(frozen=True)
class ImageLabels:
    """What an edgepack image says about itself in its config's labels."""

    target: str
    port: int
    auth: str  # "key", "none", or a function auth level ("anonymous", "function", "admin")
    score_path: str
    ready_path: str
    local_command: tuple[str, ...] | None = None
    # Every model: {"name", "version", "sha256"}.
    models: tuple[dict[str, Any], ...] = field(default=())
    # IoT Edge modules: the input the agent scores and the output its results go to (routes name them).
    module_input: str | None = None
    module_output: str | None = None
    # FPGA images: profile, accelerator, provider, quantization, the two models, and the status of the check
    # (written as io.edgepack.fpga.<key>).
    accelerator: dict[str, str] | None = None

    @property
    def model_name(self) -> str:
        """The one model's name, or "image" (several models, or none)."""
        return self.models[0]["name"] if len(self.models) == 1 else "image"

    def to_labels(self) -> dict[str, str]:
        """The labels, as strings."""
        title = ", ".join(f"{m['name']}:{m['version']}" for m in self.models) or "no model"
        labels = {
            f"{PREFIX}target": self.target, f"{PREFIX}port": str(self.port), f"{PREFIX}auth": self.auth,
            f"{PREFIX}score-path": self.score_path, f"{PREFIX}ready-path": self.ready_path,
            f"{PREFIX}models": json.dumps(list(self.models), sort_keys=True),
            "org.opencontainers.image.title": f"{title} ({self.target})",
        }
        if self.local_command:
            labels[f"{PREFIX}local-command"] = json.dumps(list(self.local_command))
        if self.module_input:
            labels[f"{PREFIX}module.input"] = self.module_input
        if self.module_output:
            labels[f"{PREFIX}module.output"] = self.module_output
        for key, value in sorted((self.accelerator or {}).items()):
            labels[f"{PREFIX}fpga.{key}"] = value
        if len(self.models) == 1:
            only = self.models[0]
            labels.update({f"{PREFIX}model.name": only["name"], f"{PREFIX}model.version": str(only["version"]),
                           f"{PREFIX}model.sha256": only["sha256"],
                           "org.opencontainers.image.version": str(only["version"])})
        return labels

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> "ImageLabels | None":
        """Read the labels back; None when the image carries no edgepack run labels."""
        if f"{PREFIX}port" not in labels:
            return None
        command = labels.get(f"{PREFIX}local-command")
        models = json.loads(labels.get(f"{PREFIX}models") or "[]")
        if not models and f"{PREFIX}model.name" in labels:  # images made before the models label
            models = [{"name": labels[f"{PREFIX}model.name"], "version": labels.get(f"{PREFIX}model.version", ""),
                       "sha256": labels.get(f"{PREFIX}model.sha256", "")}]
        accelerator = {k[len(f"{PREFIX}fpga."):]: v for k, v in labels.items() if k.startswith(f"{PREFIX}fpga.")}
        return cls(target=labels.get(f"{PREFIX}target", ""), port=int(labels[f"{PREFIX}port"]),
                   auth=labels.get(f"{PREFIX}auth", "none"), score_path=labels.get(f"{PREFIX}score-path", "/score"),
                   ready_path=labels.get(f"{PREFIX}ready-path", "/"),
                   local_command=tuple(json.loads(command)) if command else None, models=tuple(models),
                   module_input=labels.get(f"{PREFIX}module.input"), module_output=labels.get(f"{PREFIX}module.output"),
                   accelerator=accelerator or None)
