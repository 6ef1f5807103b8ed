"""RuntimeConfig: what the image's runtime.json says (entry script, model folder, samples, limits, auth)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any


class RuntimeSetupError(Exception):
    """The runtime cannot start: bad runtime config, missing keys, or an entry script that fails to load."""


@dataclass(frozen=True)
class RuntimeConfig:
    """The runtime's settings, baked into the image at build time."""

    entry_script: str
    source_dir: str
    model_dir: str
    model: dict[str, Any]
    target: str = "webservice"
    input_sample: Any = None
    output_sample: Any = None
    max_request_bytes: int = 10 << 20
    auth_enabled: bool = False
    route: str = "score"
    auth_level: str = "anonymous"
    # Micro-batching of binary tensor requests: {"max_batch_size": int, "max_wait_ms": float}.
    batching: dict[str, Any] | None = None
    # Azure ML's AML_APP_ROOT: the folder holding azureml-models/ (where Model.get_model_path looks).
    app_root: str = ""

    @classmethod
    def from_file(cls, path: str | None = None) -> "RuntimeConfig":
        """Read ``path`` (default ``$EDGEPACK_RUNTIME_CONFIG``).

        Raises:
            RuntimeSetupError: the file is missing, not JSON, or lacks a required field.
        """
        path = path or os.environ.get("EDGEPACK_RUNTIME_CONFIG")
        if not path:
            raise RuntimeSetupError("no runtime config: set EDGEPACK_RUNTIME_CONFIG to the runtime.json path")
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
            return cls(**known)
        except (OSError, ValueError, TypeError) as exc:
            raise RuntimeSetupError(f"reading runtime config '{path}': {exc}") from exc
