"""Inference configs: Azure ML's keys load as they are; every problem is reported at once, by field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgepack.config.load import load_config
from edgepack.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_the_bundled_azure_ml_config_loads():
    config = load_config(ROOT / "samples" / "digits" / "inferenceconfig.json")
    assert config.entry_script == ROOT / "samples" / "digits" / "src" / "score.py"
    assert config.pip_requirements == ("numpy", "onnxruntime")
    assert len(config.input_sample["data"][0]) == 64


def test_yaml_with_snake_case_keys_and_conda_pip_section(tmp_path):
    (tmp_path / "score.py").write_text("def init():\n    pass\n\ndef run(data, extra=None):\n    return data\n")
    (tmp_path / "env.yml").write_text("dependencies:\n  - python=3.11\n  - pip\n  - pip:\n    - scikit-learn==1.5.2\n")
    (tmp_path / "cfg.yaml").write_text("entry_script: score.py\nconda_file: env.yml\nenvironment_variables:\n"
                                       "  WORKERS: 2\nmax_request_bytes: 1024\n")
    config = load_config(tmp_path / "cfg.yaml")
    assert config.pip_requirements == ("scikit-learn==1.5.2",)
    assert config.environment_variables == {"WORKERS": "2"}
    assert config.max_request_bytes == 1024


def test_every_problem_is_listed_at_once(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "score.py").write_text("def init():\n    pass\n")
    (tmp_path / "env.yml").write_text("dependencies:\n  - scikit-learn=1.2\n  - pip:\n    - numpy\n")
    (tmp_path / "req.txt").write_text("numpy\n-e .\n--index-url https://example.invalid/simple\n")
    data = {"entryScirpt": "score.py", "sourceDirectory": "src", "condaFile": "env.yml", "requirementsFile": "req.txt",
            "baseImageRegistry": {"address": "r.example", "username": "u", "password": "p4ss"},
            "extraDockerfileSteps": "steps.txt", "runtime": "spark-py"}
    (tmp_path / "cfg.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "cfg.json")
    problems = "\n".join(info.value.problems)
    for needle in ("entryScirpt: unknown key (did you mean 'entryScript'?)", "entryScript: required",
                   "'scikit-learn=1.2' is a conda-only package", "line 2 '-e .'", "line 3 '--index-url",
                   "baseImageRegistry.password: secrets are not kept", "extraDockerfileSteps: not supported",
                   "runtime: 'spark-py' is not supported"):
        assert needle in problems
    assert "p4ss" not in str(info.value)
    assert info.value.hint


def test_entry_script_checks(tmp_path):
    (tmp_path / "score.py").write_text("def init(x):\n    pass\n\ndef run(a, b):\n    pass\n")
    (tmp_path / "cfg.json").write_text(json.dumps({"entryScript": "score.py"}))
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "cfg.json")
    assert any("init() in 'score.py' must take no required arguments" in p for p in info.value.problems)
    assert any("run() in 'score.py' must take exactly one argument" in p for p in info.value.problems)
    (tmp_path / "score.py").write_text("def init():\n    pass\n\ndef run(x)\n    pass\n")
    with pytest.raises(ConfigError, match="syntax error at line 4"):
        load_config(tmp_path / "cfg.json")


def test_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="no such file") as info:
        load_config(tmp_path / "missing.json")
    assert info.value.hint
    (tmp_path / "bad.json").write_text('{"entryScript": "score.py",\n  oops}')
    with pytest.raises(ConfigError, match="line 2, column 3"):
        load_config(tmp_path / "bad.json")
