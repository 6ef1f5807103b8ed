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
from edgepack.targets import FunctionsHttpTarget, IoTEdgeTarget, WebServiceTarget
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
    source = _files(plan.layers[2])
    assert set(source) == {"/app/src/score.py", "/opt/edgepack/runtime.json"}
    rc = json.loads(source["/opt/edgepack/runtime.json"].data)
    assert rc["entry_script"] == "/app/src/score.py"
    assert rc["app_root"] == "/app"
    assert "model_dir" not in rc and "models" not in rc  # each model's entry lives in its own layer
    assert rc["auth_enabled"] is True
    assert rc["input_sample"] == {"data": [[1.0, 2.0, 3.0, 4.0]]}
    model_files = _files(plan.layers[3])
    assert set(model_files) == {"/app/azureml-models/linear/1/model.onnx", "/opt/edgepack/models/linear-1.json"}
    assert json.loads(model_files["/opt/edgepack/models/linear-1.json"].data) == {
        "name": "linear", "version": 1, "sha256": model.sha256, "dir": "/app/azureml-models/linear/1"}
    assert plan.env["AZUREML_MODEL_DIR"] == "/app/azureml-models/linear/1"
    assert plan.env["AML_APP_ROOT"] == "/app"
    assert plan.env["AZUREML_ENTRY_SCRIPT"] == "/app/src/score.py"
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
    assert set(_files(plan.layers[2])) == {"/home/site/wwwroot/score.py", "/opt/edgepack/runtime.json"}
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


def test_several_models_get_a_layer_each_and_azure_ml_s_folder_layout(inputs, tmp_path):
    model, config = inputs
    store = LocalModelStore(tmp_path / "store")
    folder = tmp_path / "outputs"
    (folder / "sub").mkdir(parents=True)
    (folder / "weights.bin").write_bytes(b"w")
    (folder / "sub" / "vocab.txt").write_text("v")
    other = store.register("tokenizer", folder)
    assert other.folder == "outputs"
    plan = plan_image((model, other), config, WebServiceTarget())
    assert [layer.name for layer in plan.layers][-2:] == ["model-linear", "model-tokenizer"]
    assert set(_files(plan.layers[-1])) == {"/app/azureml-models/tokenizer/1/outputs/weights.bin",
                                            "/app/azureml-models/tokenizer/1/outputs/sub/vocab.txt",
                                            "/opt/edgepack/models/tokenizer-1.json"}
    # several models: AZUREML_MODEL_DIR is the folder holding them all, as Azure ML sets it
    assert plan.env["AZUREML_MODEL_DIR"] == "/app/azureml-models"
    assert "io.edgepack.model.name" not in plan.labels
    assert [m["name"] for m in json.loads(plan.labels["io.edgepack.models"])] == ["linear", "tokenizer"]
    # a new version of one of them changes that model's layer only
    v2 = store.register("tokenizer", folder)
    keys = lambda p: [layer.key(0) if isinstance(layer, LayerSpec) else layer for layer in p.layers]  # noqa: E731
    again = plan_image((model, v2), config, WebServiceTarget())
    assert [a == b for a, b in zip(keys(plan), keys(again))] == [True, True, True, True, False]
    with pytest.raises(PackagingError, match="a model is named twice"):
        plan_image((other, v2), config, WebServiceTarget())


def test_a_deployment_without_a_model(inputs):
    _, config = inputs
    plan = plan_image((), config, WebServiceTarget())
    assert [layer.name for layer in plan.layers] == ["python-dependencies", "edgepack-runtime", "source"]
    assert plan.env["AZUREML_MODEL_DIR"] == "/app/azureml-models"
    assert json.loads(plan.labels["io.edgepack.models"]) == []


def test_the_conda_python_pin_chooses_the_default_base(inputs, tmp_path):
    model, _ = inputs
    (tmp_path / "score.py").write_text("def init():\n    pass\n\ndef run(data):\n    return data\n")
    (tmp_path / "env.yml").write_text("dependencies:\n- python=3.9.16\n- numpy\n")
    (tmp_path / "cfg.json").write_text(json.dumps({"entryScript": "score.py", "condaFile": "env.yml"}))
    config = load_config(tmp_path / "cfg.json")
    assert plan_image(model, config, WebServiceTarget()).base_image == "docker.io/library/python:3.9-slim-bookworm"
    assert plan_image(model, config, FunctionsHttpTarget()).base_image == \
        "mcr.microsoft.com/azure-functions/python:4-python3.9"
    # no image for a Python this old: the default base (and a warning at build time naming both Pythons)
    (tmp_path / "env.yml").write_text("dependencies:\n- python=3.6.2\n- numpy\n")
    old = load_config(tmp_path / "cfg.json")
    assert plan_image(model, old, WebServiceTarget()).base_image == "docker.io/library/python:3.11-slim-bookworm"


def test_rawhttp_scripts_need_an_http_trigger(inputs, tmp_path):
    from edgepack.targets import FunctionsBlobTarget

    model, _ = inputs
    (tmp_path / "score.py").write_text(
        "from azureml.contrib.services.aml_request import rawhttp\n\ndef init():\n    pass\n\n"
        "@rawhttp\ndef run(request):\n    return request.get_data()\n")
    (tmp_path / "cfg.json").write_text(json.dumps({"entryScript": "score.py"}))
    config = load_config(tmp_path / "cfg.json")
    assert "werkzeug" in plan_image(model, config, FunctionsHttpTarget()).layers[0].requirements
    with pytest.raises(PackagingError, match="its run\\(\\) is @rawhttp, so it needs an HTTP request"):
        plan_image(model, config, FunctionsBlobTarget(input_path="in/{name}", output_path="out/{name}"))


def test_iot_edge_module_plan_runs_the_agent_with_the_device_sdk(inputs):
    model, config = inputs
    plan = plan_image(model, config, IoTEdgeTarget(module_input="camera", module_output="scores"))
    assert [layer.name for layer in plan.layers] == ["python-dependencies", "edgepack-runtime", "source", "model"]
    deps = plan.layers[0]
    assert isinstance(deps, PipLayer)
    assert deps.requirements == ("numpy", "onnxruntime", "azure-iot-device>=2.14,<3", "scikit-learn==1.5.2")
    runtime = _files(plan.layers[1])
    assert "/opt/edgepack/lib/device_agents/agent.py" in runtime and "/opt/edgepack/lib/device_agents/__main__.py" \
        in runtime
    assert not any("/triggers/" in d for d in runtime)
    rc = json.loads(_files(plan.layers[2])["/opt/edgepack/runtime.json"].data)
    assert (rc["target"], rc["module_input"], rc["module_output"]) == ("iot-edge", "camera", "scores")
    assert rc["auth_enabled"] is False
    assert plan.entrypoint == ("python3", "-m", "device_agents") and plan.exposed_ports == ()
    assert plan.env["EDGEPACK_STATE_DIR"] == "/var/lib/edgepack"
    assert plan.labels["io.edgepack.target"] == "iot-edge"
    assert (plan.labels["io.edgepack.module.input"], plan.labels["io.edgepack.module.output"]) == ("camera", "scores")
