"""Several models in one image, found as Azure ML finds them: Model.get_model_path for each (a file and a
folder), AZUREML_MODEL_DIR holding them all, AML_APP_ROOT; and a new version of one model changes one layer."""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.project import run_cli

pytestmark = pytest.mark.integration

SCORE = '''
import json
import os

from azureml.core.model import Model

paths = {}


def init():
    paths["labels"] = Model.get_model_path("labels")
    paths["weights"] = Model.get_model_path("weights", version=2)


def run(raw_data):
    with open(paths["labels"]) as f:
        labels = json.load(f)
    with open(os.path.join(paths["weights"], "w.txt")) as f:
        weights = f.read()
    return {"paths": paths, "labels": labels, "weights": weights, "model_dir": os.environ["AZUREML_MODEL_DIR"],
            "app_root": os.environ["AML_APP_ROOT"]}
'''


def test_two_models_found_by_get_model_path_in_a_container(tmp_path, edgepack_home, base_image_ref,
                                                            docker_daemon, capsys, caplog):
    (tmp_path / "labels.json").write_text(json.dumps(["cat", "dog"]))
    for version in (1, 2):
        (tmp_path / "weights").mkdir(exist_ok=True)
        (tmp_path / "weights" / "w.txt").write_text(f"weights v{version}")
        code, _, err = run_cli(["model", "register", "weights", str(tmp_path / "weights")], capsys)
        assert code == 0, err
    code, _, err = run_cli(["model", "register", "labels", str(tmp_path / "labels.json")], capsys)
    assert code == 0, err
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "score.py").write_text(SCORE)
    # the SDK's own environment file: azureml-defaults is replaced by edgepack's runtime
    (tmp_path / "env.yml").write_text("dependencies:\n- python=3.11\n- pip:\n  - azureml-defaults\n")
    config = tmp_path / "inferenceconfig.json"
    config.write_text(json.dumps({"entryScript": "score.py", "sourceDirectory": "src", "condaFile": "env.yml"}))
    args = ["package", "--model", "labels", "--model", "weights:2", "--inference-config", str(config),
            "--target", "webservice", "--no-auth", "--base-image", base_image_ref, "--json"]
    code, out, err = run_cli([*args, "--output", str(tmp_path / "image")], capsys)
    assert code == 0, err
    assert any("azureml-defaults: not installed" in r.getMessage() for r in caplog.records)
    first = json.loads(out)
    code, out, err = run_cli(["run", str(tmp_path / "image"), "--json"], capsys)
    assert code == 0, err
    info = json.loads(out)
    try:
        req = urllib.request.Request(info["url"], data=b"{}", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            answer = json.loads(resp.read())
    finally:
        run_cli(["stop", info["name"]], capsys)
    assert answer == {
        "paths": {"labels": "/app/azureml-models/labels/1/labels.json",
                  "weights": "/app/azureml-models/weights/2/weights"},
        "labels": ["cat", "dog"], "weights": "weights v2", "model_dir": "/app/azureml-models", "app_root": "/app"}
    # version 3 of one model: only that model's layer changes
    (tmp_path / "weights" / "w.txt").write_text("weights v3")
    assert run_cli(["model", "register", "weights", str(tmp_path / "weights")], capsys)[0] == 0
    args[args.index("weights:2")] = "weights:3"
    code, out, err = run_cli([*args, "--output", str(tmp_path / "image3")], capsys)
    assert code == 0, err
    second = json.loads(out)
    assert [a == b for a, b in zip(first["layers"], second["layers"])] == [True] * (len(first["layers"]) - 1) + [False]
