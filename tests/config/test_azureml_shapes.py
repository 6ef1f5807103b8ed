"""Azure ML's config shapes as they are written: conda files, the CLI's environment block, v2 deployments, and
the azureml packages and modules scoring scripts name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from edgepack.config.conda import read_conda
from edgepack.config.load import load_config
from edgepack.errors import ConfigError

SCORE = "import json\n\ndef init():\n    pass\n\n\ndef run(data):\n    return data\n"


def _problems(path: Path) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.problems


def test_conda_channel_packages_become_pip_requirements_with_their_pins():
    env = {"name": "project_environment", "channels": ["conda-forge", "defaults"],
           "dependencies": ["python=3.8.10", "numpy=1.21", "scikit-learn=0.24.2", "pandas==1.3.5", "scipy>=1.5,<2",
                            "conda-forge::lightgbm 3.2.*", "pytorch", "py-xgboost=1.5.0=py38_0", "mkl", "pip=21",
                            {"pip": ["azureml-defaults", "joblib==1.1.0"]}]}
    read = read_conda(env, "condaFile")
    assert read.problems == ()
    assert read.python == "3.8"
    assert read.requirements.requirements == (
        "numpy==1.21.*", "scikit-learn==0.24.2", "pandas==1.3.5", "scipy>=1.5,<2", "lightgbm==3.2.*", "torch",
        "xgboost==1.5.0", "azureml-defaults", "joblib==1.1.0")
    assert read.conda_packages == ("numpy", "scikit-learn", "pandas", "scipy", "lightgbm", "torch", "xgboost")
    assert any("'mkl' is not installed" in n for n in read.notes)
    assert any("build string 'py38_0' is ignored" in n for n in read.notes)
    assert not any("pip=21" in n for n in read.notes)


def test_a_conda_file_with_only_a_python_pin_and_a_range():
    read = read_conda({"dependencies": ["python>=3.9,<3.12", {"pip": ["numpy"]}]}, "condaFile")
    assert read.python == "3.9" and read.requirements.requirements == ("numpy",)


def _project(tmp_path: Path, data: dict, *, score: str = SCORE, name: str = "cfg.json") -> Path:
    (tmp_path / "score.py").write_text(score)
    path = tmp_path / name
    path.write_text(json.dumps(data) if name.endswith(".json") else yaml.safe_dump(data))
    return path


def test_azureml_server_packages_are_replaced_and_what_they_brought_is_added(tmp_path):
    (tmp_path / "env.yml").write_text(yaml.safe_dump({"dependencies": [
        "python=3.11", "numpy", {"pip": ["azureml-defaults>=1.0.45", "azureml-core", "scikit-learn"]}]}))
    score = ("from azureml.core.model import Model\nfrom inference_schema.schema_decorators import input_schema\n"
             "from inference_schema.parameter_types.numpy_parameter_type import NumpyParameterType\n"
             "import numpy as np\n\ndef init():\n    pass\n\n@input_schema('data', NumpyParameterType(np.zeros(2)))\n"
             "def run(data):\n    return data.tolist()\n")
    config = load_config(_project(tmp_path, {"entryScript": "score.py", "condaFile": "env.yml"}, score=score))
    assert config.pip_requirements == ("numpy", "scikit-learn", "inference-schema")
    assert config.replaced == ("azureml-defaults", "azureml-core")
    assert config.python_version == "3.11"
    assert any(n.startswith("azureml-defaults, azureml-core: not installed") for n in config.notes)


def test_rawhttp_scripts_get_werkzeug(tmp_path):
    score = ("from azureml.contrib.services.aml_request import AMLRequest, rawhttp\n"
             "from azureml.contrib.services.aml_response import AMLResponse\n\ndef init():\n    pass\n\n"
             "@rawhttp\ndef run(request):\n    return AMLResponse('ok', 200)\n")
    config = load_config(_project(tmp_path, {"entryScript": "score.py"}, score=score))
    assert config.pip_requirements == ("werkzeug",)


def test_azureml_names_images_do_not_provide_are_refused_at_package_time(tmp_path):
    score = ("from azureml.core import Workspace, Model\nfrom azureml.core.run import Run\n\n"
             "def init():\n    pass\n\ndef run(data):\n    return data\n")
    problems = _problems(_project(tmp_path, {"entryScript": "score.py"}, score=score))
    assert len(problems) == 2
    assert problems[0].startswith("entryScript: 'score.py' imports azureml.core.Workspace, which images do not")
    assert problems[1].startswith("entryScript: 'score.py' imports azureml.core.run, which images do not")


def test_run_signatures_azure_ml_accepts(tmp_path):
    for score in ("def init():\n    pass\n\ndef run(data, request_headers):\n    return data\n",
                  "def init():\n    pass\n\nasync def run(data):\n    return data\n",
                  "from inference_schema.schema_decorators import input_schema\nfrom x import T\n\n"
                  "def init():\n    pass\n\n@input_schema('a', T)\n@input_schema('b', T)\n"
                  "def run(a, b):\n    return a\n"):
        assert load_config(_project(tmp_path, {"entryScript": "score.py"}, score=score)).entry_script.name == "score.py"


def test_empty_or_false_values_of_missing_features_are_accepted_with_a_note(tmp_path):
    config = load_config(_project(tmp_path, {"entryScript": "score.py", "extraDockerfileSteps": "",
                                             "enableGpu": False, "cudaVersion": None, "schemaFile": ""}))
    assert len(config.notes) == 4
    assert any(n.startswith("enableGpu: False accepted") for n in config.notes)
    problems = _problems(_project(tmp_path, {"entryScript": "score.py", "enableGpu": True,
                                             "extraDockerfileSteps": "steps.txt"}))
    assert sorted(p.split(":")[0] for p in problems) == ["enableGpu", "extraDockerfileSteps"]


CLI_CONFIG = {
    "entryScript": "score.py",
    "sourceDirectory": ".",
    "environment": {
        "name": "myenv", "version": "1",
        "python": {"userManagedDependencies": False, "interpreterPath": "python", "condaDependenciesFile": None,
                   "baseCondaEnvironment": None,
                   "condaDependencies": {"name": "project_environment", "channels": ["conda-forge"],
                                         "dependencies": ["python=3.8.10", "scikit-learn==1.0.2",
                                                          {"pip": ["azureml-defaults", "joblib"]}]}},
        "docker": {"enabled": False, "baseImage": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:20220616.v1",
                   "baseDockerfile": None, "sharedVolumes": True, "shmSize": None, "arguments": [],
                   "baseImageRegistry": {"address": None, "username": None, "password": None}},
        "environmentVariables": {"EXAMPLE_ENV_VAR": "EXAMPLE_VALUE"},
        "spark": {"repositories": [], "packages": [], "precachePackages": True},
        "databricks": {"mavenLibraries": [], "pypiLibraries": [], "rcranLibraries": [], "jarLibraries": [],
                       "eggLibraries": []},
        "inferencingStackVersion": None,
    },
}


def test_the_azure_cli_environment_block_loads(tmp_path):
    config = load_config(_project(tmp_path, CLI_CONFIG))
    assert config.pip_requirements == ("scikit-learn==1.0.2", "joblib")
    assert config.python_version == "3.8"
    assert config.base_image is None  # Azure ML's conda build image: the target's default base is used
    assert config.environment_variables == {"EXAMPLE_ENV_VAR": "EXAMPLE_VALUE"}
    assert any("Azure ML's conda build image" in n for n in config.notes)


def test_an_environment_block_with_what_cannot_be_built_is_refused(tmp_path):
    data = json.loads(json.dumps(CLI_CONFIG))
    data["environment"]["docker"]["baseDockerfile"] = "FROM ubuntu\nRUN apt-get install -y x"
    data["environment"]["docker"]["baseImage"] = "myregistry.example/base:1"
    data["environment"]["spark"]["packages"] = [{"group": "g", "artifact": "a", "version": "1"}]
    problems = _problems(_project(tmp_path, data))
    assert [p.split(":")[0] for p in problems] == ["environment.docker.baseDockerfile", "environment.spark"]


def _v2_layout(tmp_path: Path) -> Path:
    """The folders of azureml-examples' cli/endpoints/online/model-1 sample."""
    (tmp_path / "model-1" / "model").mkdir(parents=True)
    (tmp_path / "model-1" / "model" / "sklearn_regression_model.pkl").write_bytes(b"x")
    (tmp_path / "model-1" / "onlinescoring").mkdir()
    (tmp_path / "model-1" / "onlinescoring" / "score.py").write_text(SCORE)
    (tmp_path / "model-1" / "environment").mkdir()
    (tmp_path / "model-1" / "environment" / "conda.yaml").write_text(yaml.safe_dump({
        "name": "model-env", "channels": ["conda-forge"],
        "dependencies": ["python=3.9", "numpy=1.23.5", "pip=23.0.1", "scikit-learn=1.2.2", "scipy=1.10.1",
                         {"pip": ["azureml-defaults==1.49.0", "inference-schema[numpy-support]==1.5.1",
                                  "joblib==1.2.0"]}]}))
    (tmp_path / "managed").mkdir()
    return tmp_path / "managed"


def test_a_v2_managed_online_deployment_loads_as_the_inference_config(tmp_path):
    folder = _v2_layout(tmp_path)
    deployment = {
        "$schema": "https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json",
        "name": "blue", "endpoint_name": "my-endpoint",
        "model": {"path": "../model-1/model/"},
        "code_configuration": {"code": "../model-1/onlinescoring/", "scoring_script": "score.py"},
        "environment": {"conda_file": "../model-1/environment/conda.yaml",
                        "image": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest"},
        "instance_type": "Standard_DS3_v2", "instance_count": 1,
        "environment_variables": {"WORKER_COUNT": "2"},
    }
    path = folder / "blue-deployment.yml"
    path.write_text(yaml.safe_dump(deployment))
    config = load_config(path)
    assert config.entry_script == (tmp_path / "model-1" / "onlinescoring" / "score.py").resolve()
    assert config.source_directory == (tmp_path / "model-1" / "onlinescoring").resolve()
    assert config.pip_requirements == ("numpy==1.23.5", "scikit-learn==1.2.2", "scipy==1.10.1",
                                       "inference-schema[numpy-support]==1.5.1", "joblib==1.2.0")
    assert config.python_version == "3.9"
    assert config.environment_variables == {"WORKER_COUNT": "2"}
    assert [(m.name, m.version, m.path) for m in config.models] == [
        ("model", None, (tmp_path / "model-1" / "model").resolve())]
    assert any(n.startswith("endpoint_name, instance_count, instance_type: Azure hosting") for n in config.notes)


def test_a_v2_deployment_with_its_environment_and_model_in_their_own_files(tmp_path):
    folder = _v2_layout(tmp_path)
    (folder / "env.yml").write_text(yaml.safe_dump({
        "$schema": "https://azuremlschemas.azureedge.net/latest/environment.schema.json", "name": "model-env",
        "image": "registry.example/python:3.11", "conda_file": "../model-1/environment/conda.yaml"}))
    (folder / "model.yml").write_text(yaml.safe_dump({
        "$schema": "https://azuremlschemas.azureedge.net/latest/model.schema.json", "name": "sklearn-diabetes",
        "version": 3, "path": "../model-1/model"}))
    path = folder / "deployment.yml"
    path.write_text(yaml.safe_dump({
        "model": "model.yml", "environment": "env.yml",
        "code_configuration": {"code": "../model-1/onlinescoring", "scoring_script": "score.py"}}))
    config = load_config(path)
    assert config.base_image == "registry.example/python:3.11"
    assert [(m.name, m.version) for m in config.models] == [("sklearn-diabetes", 3)]
    path.write_text(yaml.safe_dump({
        "model": "azureml:sklearn-diabetes:2", "environment": "azureml:sklearn-env:1", "unknown": 1,
        "code_configuration": {"code": "../model-1/onlinescoring", "scoring_script": "score.py"}}))
    problems = _problems(path)
    assert [p.split(":")[0] for p in problems] == ["environment", "unknown"]
