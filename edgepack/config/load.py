"""Loading an inference config file (JSON or YAML) into an InferenceConfig. Side effect: reads the file."""

from __future__ import annotations

from pathlib import Path

from edgepack.config.files import FileProblem, read_structured
from edgepack.config.schema import InferenceConfig
from edgepack.errors import ConfigError


def load_config(path: Path) -> InferenceConfig:
    """Read and validate ``path``; relative paths inside it are taken from its folder.

    Raises:
        ConfigError: the file is missing or unparsable, or any field is invalid (all listed at once).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"reading inference config '{path}': no such file", source=str(path),
                          hint="Pass the path of an inferenceconfig.json or .yaml with --inference-config.")
    try:
        data = read_structured(path)
    except FileProblem as exc:
        raise ConfigError(f"reading inference config '{path}': {exc}", source=str(path),
                          hint="Fix the syntax error at the position shown.") from exc
    return InferenceConfig.from_dict(data, base_dir=path.parent.resolve(), source=str(path))
