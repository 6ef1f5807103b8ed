"""Inference configs: Azure ML's keys load as they are; every problem is reported at once, by field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgepack.config.requirements import parse_requirements
from edgepack.config.load import load_config
from edgepack.config.schema import DEFAULT_MAX_REQUEST_BYTES, InferenceConfig, RegistrySettings
from edgepack.errors import ConfigError
from tests.project import make_project

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "samples" / "digits"
GOOD_SCORE = "def init():\n    pass\n\n\ndef run(data):\n    return data\n"


def _write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data, indent=2))
    return path


def _problems(path: Path) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.problems


# --- configs that load -----------------------------------------------------------------------------------------


def test_the_bundled_azure_ml_config_loads():
    config = load_config(DIGITS / "inferenceconfig.json")
    assert config.entry_script.is_absolute()
    assert config.entry_script == (DIGITS / "src" / "score.py").resolve()
    assert config.source_directory == (DIGITS / "src").resolve()
    assert config.runtime == "python"
    assert config.pip_requirements == ("numpy", "onnxruntime")
    assert config.conda_file is None
    assert config.base_image is None and config.base_image_registry is None
    assert config.input_sample is not None
    assert len(config.input_sample["data"]) == 2
    assert [len(row) for row in config.input_sample["data"]] == [64, 64]
    assert config.output_sample["predictions"] == [3, 7]
    assert config.max_request_bytes == DEFAULT_MAX_REQUEST_BYTES == 10 * 1024 * 1024
    assert config.source == DIGITS / "inferenceconfig.json"


def test_the_test_project_config_loads(tmp_path):
    path = make_project(tmp_path, requirements=("numpy==1.26.4", "onnxruntime>=1.17 ; python_version >= '3.9'"))
    config = load_config(path)
    assert config.entry_script == (tmp_path / "src" / "score.py").resolve()
    assert config.pip_requirements == ("numpy==1.26.4", "onnxruntime>=1.17 ; python_version >= '3.9'")
    assert config.input_sample == {"data": [[1.0, 2.0, 3.0, 4.0]]}


def test_relative_paths_are_taken_from_the_config_folder(tmp_path, monkeypatch):
    path = make_project(tmp_path / "proj")
    monkeypatch.chdir(tmp_path)
    config = load_config(Path("proj") / "inferenceconfig.json")
    assert config.entry_script == (tmp_path / "proj" / "src" / "score.py").resolve()
    assert config.entry_script.is_absolute()
    assert config.source == Path("proj") / "inferenceconfig.json"
    assert path.is_file()


def test_yaml_with_snake_case_keys(tmp_path):
    src = tmp_path / "code"
    src.mkdir()
    (src / "score.py").write_text("def init():\n    pass\n\ndef run(data, extra=None):\n    return data\n")
    (tmp_path / "env.yml").write_text("name: x\ndependencies:\n  - python=3.11\n  - pip\n  - pip:\n"
                                      "    - scikit-learn==1.5.2\n")
    (tmp_path / "reqs.txt").write_text("# pinned\nrequests==2.32.3  # http\n\npyyaml\n")
    (tmp_path / "in.json").write_text('{"data": [[0.5, 1.5]]}')
    (tmp_path / "cfg.yaml").write_text(
        "entry_script: score.py\n"
        "source_directory: code\n"
        "runtime: Python\n"
        "conda_file: env.yml\n"
        "requirements_file: reqs.txt\n"
        "pip_requirements:\n  - numpy\n"
        "base_image: example.test/base:1\n"
        "base_image_registry:\n  address: example.test\n  username: me\n  password_env: REG_PASSWORD\n"
        "environment_variables:\n  WORKERS: 2\n  MODE: fast\n"
        "input_sample_file: in.json\n"
        "output_sample:\n  result: [1]\n"
        "max_request_bytes: 1024\n"
        "description: a yaml config\n")
    config = load_config(tmp_path / "cfg.yaml")
    assert config.entry_script == (src / "score.py").resolve()
    assert config.source_directory == src.resolve()
    assert config.runtime == "python"
    # pipRequirements, then requirementsFile, then the conda file's pip section
    assert config.pip_requirements == ("numpy", "requests==2.32.3", "pyyaml", "scikit-learn==1.5.2")
    assert config.conda_file == (tmp_path / "env.yml").resolve()
    assert config.base_image == "example.test/base:1"
    assert config.base_image_registry == RegistrySettings("example.test", "me", "REG_PASSWORD")
    assert config.environment_variables == {"WORKERS": "2", "MODE": "fast"}
    assert config.input_sample == {"data": [[0.5, 1.5]]}
    assert config.output_sample == {"result": [1]}
    assert config.max_request_bytes == 1024


def test_from_dict_refuses_a_non_mapping(tmp_path):
    with pytest.raises(ConfigError) as info:
        InferenceConfig.from_dict(["entryScript"], base_dir=tmp_path, source="cfg.json")
    assert str(info.value) == "cfg.json: the config must be a mapping of keys to values"
    assert info.value.source == "cfg.json"
    assert info.value.hint
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(tmp_path / "empty.yaml")


# --- every problem at once -------------------------------------------------------------------------------------


def test_every_problem_is_listed_at_once(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "score.py").write_text("def init():\n    pass\n")  # no run()
    (tmp_path / "env.yml").write_text("dependencies:\n  - python=3.11\n  - scikit-learn=1.2\n  - pip:\n"
                                      "    - numpy\n")
    data = {"entryScirpt": "score.py", "sourceDirectory": "src", "condaFile": "env.yml",
            "baseImageRegistry": {"address": "r.example", "username": "u", "password": "p4ss-w0rd"},
            "extraDockerfileSteps": "steps.txt"}
    with pytest.raises(ConfigError) as info:
        load_config(_write_json(tmp_path / "cfg.json", data))
    err = info.value
    problems = err.problems
    expected = [
        "entryScirpt: unknown key (did you mean 'entryScript'?)",
        "entryScript: required (the score.py that defines init() and run())",
        "baseImageRegistry.password: secrets are not kept in config files",
        "extraDockerfileSteps: not supported: edgepack builds without running commands in the image",
    ]
    for needle in expected:
        assert sum(needle in p for p in problems) == 1, (needle, problems)
    assert len(problems) == len(expected)
    # conda channel packages and the python= pin are not problems: they go through pip
    assert not any("python=3.11" in p or "numpy" in p or "scikit-learn" in p for p in problems)
    # one error, its message lists each problem, never the secret
    assert str(err).startswith(f"{tmp_path / 'cfg.json'}: invalid inference config:\n  - ")
    assert all(f"  - {p}" in str(err) for p in problems)
    assert "p4ss-w0rd" not in str(err)
    assert err.source == str(tmp_path / "cfg.json")
    assert "inferenceconfig.json" in err.hint


def test_entry_script_without_run_is_reported_with_other_problems(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "score.py").write_text("import json\n\ndef init():\n    pass\n\ndef predict(data):\n    return data\n")
    (tmp_path / "env.yml").write_text("dependencies:\n  - scikit-learn=1.2\n  - pip:\n    - numpy\n")
    data = {"entryScript": "score.py", "sourceDirectory": "src", "condaFile": "env.yml",
            "baseImageRegistry": {"address": "r.example", "password": "hunter2"},
            "extraDockerfileSteps": "steps.txt", "runtime": "spark-py", "enableGpu": True,
            "environmentVariables": {"1BAD": "x", "OK": "y"}, "maxRequestBytes": 0,
            "pipRequirements": ["numpy", "-e ."]}
    problems = _problems(_write_json(tmp_path / "cfg.json", data))
    expected = [
        "entryScript: 'score.py' defines no run() function",
        "baseImageRegistry.password: secrets are not kept",
        "extraDockerfileSteps: not supported",
        "enableGpu: not supported: GPU images are not built",
        "runtime: 'spark-py' is not supported (only 'python')",
        "environmentVariables.1BAD: not a valid variable name",
        "maxRequestBytes: must be a positive integer",
        "pipRequirements: line 2 '-e .': options and local paths are not supported",
    ]
    for needle in expected:
        assert sum(needle in p for p in problems) == 1, (needle, problems)
    assert len(problems) == len(expected)
    assert not any("init()" in p for p in problems)


def test_missing_entry_script_file_and_source_directory(tmp_path):
    data = {"entryScript": "score.py", "sourceDirectory": "nope"}
    problems = _problems(_write_json(tmp_path / "cfg.json", data))
    assert f"sourceDirectory: 'nope' does not exist or is not a directory (relative to {tmp_path})" in problems
    assert f"entryScript: 'score.py' does not exist (relative to {tmp_path})" in problems
    assert len(problems) == 2


def test_entry_script_outside_the_source_directory(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "score.py").write_text(GOOD_SCORE)
    problems = _problems(_write_json(tmp_path / "cfg.json", {"entryScript": "../score.py", "sourceDirectory": "src"}))
    assert problems == ("entryScript: '../score.py' is outside sourceDirectory",)


def test_entry_script_signatures(tmp_path):
    (tmp_path / "score.py").write_text("def init(x):\n    pass\n\ndef run(a, b):\n    pass\n")
    problems = _problems(_write_json(tmp_path / "cfg.json", {"entryScript": "score.py"}))
    assert problems == ("entryScript: init() in 'score.py' must take no required arguments",
                        "entryScript: run() in 'score.py' must take the request data as its one argument (and "
                        "optionally request_headers), unless inference_schema's @input_schema names them")
    (tmp_path / "score.py").write_text("x = 1\n")
    problems = _problems(tmp_path / "cfg.json")
    assert problems == ("entryScript: 'score.py' defines no init() function",
                        "entryScript: 'score.py' defines no run() function")
    # async functions, defaults and *args are accepted
    (tmp_path / "score.py").write_text("async def init(level=1):\n    pass\n\ndef run(*args):\n    pass\n")
    assert load_config(tmp_path / "cfg.json").entry_script == (tmp_path / "score.py").resolve()


def test_entry_script_syntax_error_reports_the_line(tmp_path):
    (tmp_path / "score.py").write_text("def init():\n    pass\n\n\ndef run(x)\n    pass\n")
    problems = _problems(_write_json(tmp_path / "cfg.json", {"entryScript": "score.py"}))
    assert len(problems) == 1
    assert problems[0].startswith("entryScript: 'score.py' has a syntax error at line 5: ")
    with pytest.raises(ConfigError, match="syntax error at line 5"):
        load_config(tmp_path / "cfg.json")


# --- requirement lines -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("line", ["-e .", "-r other.txt", "./local/pkg", "/abs/pkg.whl", "file:pkg",
                                  "https://example.invalid/pkg.whl"])
def test_requirement_lines_refuse_options_and_local_paths(line):
    reqs, problems = parse_requirements(f"numpy\n{line}\nonnxruntime\n", "requirementsFile")
    assert reqs.requirements == ("numpy", "onnxruntime")
    assert problems == [f"requirementsFile: line 2 '{line}': options and local paths are not supported "
                        "(dependencies are resolved from the package index for the image's platform)"]


@pytest.mark.parametrize("line", ["--index-url x", "--find-links ./wheels", "-f file:///w"])
def test_index_options_need_a_url(line):
    _, problems = parse_requirements(f"numpy\n{line}\n", "requirementsFile")
    assert problems == [f"requirementsFile: line 2 '{line}': local paths are not supported (dependencies are "
                        "resolved from an index for the image's platform)"]


def test_index_lines_the_sdk_writes_are_understood():
    # CondaDependencies.save() and pip freeze write such lines; the public index is the configured one
    text = ("--index-url https://pypi.org/simple\n--extra-index-url https://pypi.python.org/simple\n"
            "--extra-index-url https://${FEED_USER}:${FEED_TOKEN}@pkgs.example.invalid/simple\n"
            "--find-links=https://download.example.invalid/whl/cpu\n--trusted-host pkgs.example.invalid\n"
            "--pre\nnumpy\n")
    reqs, problems = parse_requirements(text, "condaFile: pip")
    assert problems == []
    assert reqs.requirements == ("numpy",)
    assert reqs.index_urls == ("https://${FEED_USER}:${FEED_TOKEN}@pkgs.example.invalid/simple",)
    assert reqs.find_links == ("https://download.example.invalid/whl/cpu",)


def test_requirement_lines_keep_ordinary_requirements():
    text = ("# comment\n\nnumpy==1.26.4  # pinned\nonnxruntime>=1.17; python_version >= '3.9'\n"
            "pkg @ https://example.invalid/pkg-1.0-py3-none-any.whl\n")
    reqs, problems = parse_requirements(text, "pipRequirements")
    assert problems == []
    assert reqs.requirements == ("numpy==1.26.4", "onnxruntime>=1.17; python_version >= '3.9'",
                                 "pkg @ https://example.invalid/pkg-1.0-py3-none-any.whl")
    assert reqs.names() == ("numpy", "onnxruntime", "pkg")


def test_requirements_file_problems_name_the_line(tmp_path):
    (tmp_path / "score.py").write_text(GOOD_SCORE)
    (tmp_path / "requirements.txt").write_text("numpy\n-e .\n--index-url x\nonnxruntime\n")
    data = {"entryScript": "score.py", "requirementsFile": "requirements.txt"}
    problems = _problems(_write_json(tmp_path / "cfg.json", data))
    assert len(problems) == 2
    assert problems[0].startswith("requirementsFile: line 2 '-e .': options and local paths are not supported")
    assert problems[1].startswith("requirementsFile: line 3 '--index-url x': local paths are not supported")


def test_conda_pip_section_refuses_options(tmp_path):
    (tmp_path / "score.py").write_text(GOOD_SCORE)
    (tmp_path / "env.yml").write_text("dependencies:\n  - pip:\n    - numpy\n    - --extra-index-url y\n")
    problems = _problems(_write_json(tmp_path / "cfg.json", {"entryScript": "score.py", "condaFile": "env.yml"}))
    assert len(problems) == 1
    assert problems[0].startswith("condaFile: pip: line 2 '--extra-index-url y': local paths are not supported")


def test_pip_requirements_must_be_a_list_of_strings(tmp_path):
    (tmp_path / "score.py").write_text(GOOD_SCORE)
    problems = _problems(_write_json(tmp_path / "cfg.json", {"entryScript": "score.py", "pipRequirements": "numpy"}))
    assert problems == ("pipRequirements: must be a list of strings",)


def test_a_direct_reference_to_a_local_file_is_refused():
    reqs, problems = parse_requirements("pkg @ file:///tmp/pkg-1.0-py3-none-any.whl\n", "pipRequirements")
    assert reqs.requirements == ()
    assert len(problems) == 1 and "local paths are not supported" in problems[0]


# --- other field checks ------------------------------------------------------------------------------------------


def test_sample_and_sample_file_together(tmp_path):
    (tmp_path / "score.py").write_text(GOOD_SCORE)
    (tmp_path / "in.json").write_text("{}")
    data = {"entryScript": "score.py", "inputSample": {"a": 1}, "inputSampleFile": "in.json"}
    assert _problems(_write_json(tmp_path / "cfg.json", data)) == (
        "inputSampleFile: give inputSample or inputSampleFile, not both",)


def test_unreadable_sample_file_is_a_problem(tmp_path):
    (tmp_path / "score.py").write_text(GOOD_SCORE)
    (tmp_path / "out.json").write_text("{not json")
    data = {"entryScript": "score.py", "outputSampleFile": "out.json"}
    problems = _problems(_write_json(tmp_path / "cfg.json", data))
    assert len(problems) == 1
    assert problems[0].startswith("outputSampleFile: 'out.json' is not valid JSON: ")
    assert "line 1, column 2" in problems[0]


@pytest.mark.parametrize("value", [True, -1, "10", 1.5])
def test_max_request_bytes_must_be_a_positive_integer(tmp_path, value):
    (tmp_path / "score.py").write_text(GOOD_SCORE)
    data = {"entryScript": "score.py", "maxRequestBytes": value}
    assert _problems(_write_json(tmp_path / "cfg.json", data)) == ("maxRequestBytes: must be a positive integer",)


def test_registry_needs_an_address_and_known_keys(tmp_path):
    (tmp_path / "score.py").write_text(GOOD_SCORE)
    data = {"entryScript": "score.py", "baseImageRegistry": {"user": "me"}}
    assert _problems(_write_json(tmp_path / "cfg.json", data)) == (
        "baseImageRegistry.user: unknown key", "baseImageRegistry.address: required")


def test_a_conda_file_that_is_not_a_mapping_is_a_problem(tmp_path):
    (tmp_path / "score.py").write_text(GOOD_SCORE)
    (tmp_path / "env.yml").write_text("- numpy\n- pip\n")
    problems = _problems(_write_json(tmp_path / "cfg.json", {"entryScript": "score.py", "condaFile": "env.yml"}))
    assert any(p.startswith("condaFile:") for p in problems)


# --- unreadable config files ---------------------------------------------------------------------------------------


def test_missing_config_file(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert str(info.value) == f"reading inference config '{missing}': no such file"
    assert info.value.hint == "Pass the path of an inferenceconfig.json or .yaml with --inference-config."
    assert info.value.source == str(missing)
    assert info.value.problems == ()
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path)  # a directory is not a config file


def test_invalid_json_gives_line_and_column(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"entryScript": "score.py",\n  oops}')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (f"reading inference config '{path}': 'bad.json' is not valid JSON: "
                               "Expecting property name enclosed in double quotes at line 2, column 3")
    assert info.value.hint == "Fix the syntax error at the position shown."


def test_invalid_yaml_gives_line_and_column(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("entryScript: score.py\nsourceDirectory: [src\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f"reading inference config '{path}': 'bad.yaml' is not valid YAML at line 3, column 1" in str(info.value)
    assert info.value.hint == "Fix the syntax error at the position shown."


def test_batching_loads_and_needs_run_batch_and_sane_numbers(tmp_path):
    (tmp_path / "score.py").write_text(GOOD_SCORE + "\n\ndef run_batch(batch):\n    return batch\n")
    data = {"entryScript": "score.py", "batching": {"maxBatchSize": 16, "maxWaitMs": 2.5}}
    config = load_config(_write_json(tmp_path / "cfg.json", data))
    assert config.batching == {"max_batch_size": 16, "max_wait_ms": 2.5}
    bad = {"entryScript": "score.py", "batching": {"maxBatchSize": 0, "maxWaitMs": 5000, "maxBatch": 3}}
    assert _problems(_write_json(tmp_path / "cfg.json", bad)) == (
        "batching.maxBatchSize: must be a number from 1 to 4096", "batching.maxWaitMs: must be a number from 0 to 1000",
        "batching.maxBatch: unknown key (maxBatchSize, maxWaitMs)")
    (tmp_path / "score.py").write_text(GOOD_SCORE)
    assert _problems(_write_json(tmp_path / "cfg.json", data)) == (
        "batching: 'score.py' defines no run_batch(batch) function to take the batches",)


def test_a_sample_file_that_is_a_symlink_is_refused(tmp_path):
    (tmp_path / "score.py").write_text(GOOD_SCORE)
    secret = tmp_path / "secret.json"
    secret.write_text('{"token": "s3cret"}')
    (tmp_path / "sample.json").symlink_to(secret)
    problems = _problems(_write_json(tmp_path / "cfg.json", {"entryScript": "score.py",
                                                             "inputSampleFile": "sample.json"}))
    assert problems == ("inputSampleFile: 'sample.json' is a symbolic link; the sample is copied into the image, "
                        "so name the file itself",)
