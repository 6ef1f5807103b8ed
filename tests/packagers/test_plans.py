"""Packagers, asserted through their ImagePlans: layer order, paths, env, labels and generated files."""

from __future__ import annotations

import json

import pytest

from edgepack.config.load import load_config
from edgepack.errors import PackagingError
from edgepack.models.store import LocalModelStore
from edgepack.oci.layer import LayerSpec
from edgepack.oci.plan import PipLayer
from edgepack.packagers import plan_image
from edgepack.targets import FunctionsHttpTarget, WebServiceTarget
from tests.project import make_model, make_project


@pytest.fixture
def inputs(tmp_path):
    store = LocalModelStore(tmp_path / "store")
    model = store.register("linear", make_model(tmp_path / "m" / "model.onnx", seed=3))
    config = load_config(make_project(tmp_path / "proj", requirements=("scikit-learn==1.5.2",)))
    return model, config


def _files(layer: LayerSpec) -> dict[str, object]:
    return {e.dest: e for e in layer.entries}


def test_webservice_layers_are_ordered_by_change_frequency(inputs):
    model, config = inputs
    plan = plan_image(model, config, WebServiceTarget())
    assert [layer.name for layer in plan.layers] == ["python-dependencies", "edgepack-runtime", "source", "model"]
    deps = plan.layers[0]
    assert isinstance(deps, PipLayer)
    assert deps.requirements == ("numpy", "onnxruntime", "scikit-learn==1.5.2")
    runtime = _files(plan.layers[1])
    assert "/opt/edgepack/lib/edgepack/__init__.py" in runtime
    assert any(d.startswith("/opt/edgepack/lib/edgepack/runtime/") for d in runtime)
    assert not any("/triggers/" in d for d in runtime)
    assert set(_files(plan.layers[2])) == {"/app/src/score.py"}
    model_files = _files(plan.layers[3])
    assert set(model_files) == {"/app/azureml-models/linear/1/model.onnx", "/opt/edgepack/runtime.json"}
    rc = json.loads(model_files["/opt/edgepack/runtime.json"].data)
    assert rc["entry_script"] == "/app/src/score.py"
    assert rc["model_dir"] == "/app/azureml-models/linear/1"
    assert rc["model"] == {"name": "linear", "version": 1, "sha256": model.sha256}
    assert rc["auth_enabled"] is True
    assert rc["input_sample"] == {"data": [[1.0, 2.0, 3.0, 4.0]]}
    assert plan.env["AZUREML_MODEL_DIR"] == "/app/azureml-models/linear/1"
    assert plan.env["PYTHONPATH"] == "/opt/edgepack/lib:/opt/edgepack/site-packages"
    assert plan.entrypoint == ("python3", "-m", "edgepack.runtime")
    assert plan.labels["io.edgepack.model.sha256"] == model.sha256
    assert plan.labels["io.edgepack.auth"] == "key"
    assert plan.exposed_ports == (5001,)


def test_functions_http_generates_app_files_and_keeps_the_host_entrypoint(inputs):
    model, config = inputs
    plan = plan_image(model, config, FunctionsHttpTarget(auth_level="admin"))
    assert plan.base_image == "mcr.microsoft.com/azure-functions/python:4-python3.11"
    assert "azure-functions" in plan.layers[0].requirements
    runtime = _files(plan.layers[1])
    app = runtime["/home/site/wwwroot/function_app.py"].data.decode()
    assert "AuthLevel.ADMIN" in app and 'route="score"' in app
    host = json.loads(runtime["/home/site/wwwroot/host.json"].data)
    assert host["version"] == "2.0"
    assert host["extensionBundle"]["version"] == "[4.*, 5.0.0)"
    assert any(d.startswith("/opt/edgepack/lib/triggers/") for d in runtime)
    assert set(_files(plan.layers[2])) == {"/home/site/wwwroot/score.py"}
    assert plan.entrypoint is None and plan.cmd is None
    assert plan.env["AzureWebJobsScriptRoot"] == "/home/site/wwwroot"
    assert plan.env["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert json.loads(plan.labels["io.edgepack.local-command"])[:3] == ["python3", "-m", "triggers"]
    assert plan.labels["io.edgepack.score-path"] == "/api/score"
    indexed = json.loads(plan.labels["io.edgepack.functions"])
    assert indexed == [{"name": "score", "bindings": [
        {"direction": "IN", "type": "httpTrigger", "name": "req", "methods": ["POST"], "authLevel": "ADMIN",
         "route": "score"}, {"direction": "OUT", "type": "http", "name": "$return"}]}]


def test_a_source_file_named_like_a_generated_one_is_refused(inputs, tmp_path):
    model, _ = inputs
    cfg_path = make_project(tmp_path / "clash")
    (tmp_path / "clash" / "src" / "function_app.py").write_text("# mine\n")
    with pytest.raises(PackagingError, match="'function_app.py' would replace") as info:
        plan_image(model, load_config(cfg_path), FunctionsHttpTarget())
    assert info.value.hint


def test_a_new_model_version_changes_only_the_model_layer(inputs, tmp_path):
    model, config = inputs
    store = LocalModelStore(tmp_path / "store")
    v2 = store.register("linear", make_model(tmp_path / "m2" / "model.onnx", seed=4))
    one, two = plan_image(model, config, WebServiceTarget()), plan_image(v2, config, WebServiceTarget())
    keys = lambda plan: [layer.key(0) if isinstance(layer, LayerSpec) else layer for layer in plan.layers]  # noqa: E731
    assert [a == b for a, b in zip(keys(one), keys(two))] == [True, True, True, False]
