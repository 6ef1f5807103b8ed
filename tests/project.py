"""Test helpers: the small projects of edgepack.devtools.projects, the CLI run in-process, function app roots."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edgepack.devtools.projects import SCORE_PY, expected, make_model, make_project

__all__ = ["SCORE_PY", "expected", "make_function_app", "make_model", "make_project", "run_cli"]


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """Run the edgepack CLI in-process; returns (exit code, stdout, stderr)."""
    from edgepack.cli import main

    old = sys.argv
    sys.argv = ["edgepack", *args]
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = old
    out, err = capsys.readouterr()
    return code, out, err


def make_function_app(tmp_path: Path, root: Path, target, *, seed: int) -> Path:
    """A script root holding the target's generated function_app.py, host.json, score.py, plus a model and the
    runtime.json naming them; returns the runtime.json path (set EDGEPACK_RUNTIME_CONFIG to it)."""
    from edgepack.packagers.functions import host_json, render_function_app

    root.mkdir(parents=True, exist_ok=True)
    (root / "function_app.py").write_bytes(render_function_app(target))
    (root / "host.json").write_bytes(host_json())
    (root / "score.py").write_text(SCORE_PY)
    make_model(tmp_path / "model" / "model.onnx", seed=seed)
    rc = {"target": target.name, "entry_script": str(root / "score.py"), "source_dir": str(root),
          "model_dir": str(tmp_path / "model"), "model": {"name": "m", "version": 1, "sha256": "x"}}
    path = tmp_path / "runtime.json"
    path.write_text(json.dumps(rc))
    return path
