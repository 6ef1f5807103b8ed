"""Target parsing: names, options that fit, and clear errors for the rest."""

from __future__ import annotations

import pytest

from edgepack.errors import ConfigError
from edgepack.targets import FpgaTarget, FunctionsHttpTarget, IoTEdgeTarget, WebServiceTarget, parse_target


def test_webservice_defaults_to_key_auth():
    assert parse_target("webservice") == WebServiceTarget(auth=True)
    assert parse_target("webservice", no_auth=True) == WebServiceTarget(auth=False)


def test_functions_http_auth_levels():
    assert parse_target("functions-http") == FunctionsHttpTarget(auth_level="function")
    assert parse_target("functions-http", auth_level="ADMIN").auth_level == "admin"


@pytest.mark.parametrize("name,kwargs,text", [
    ("functions-http", {"auth_level": "root"}, "--auth-level: 'root' is not one of"),
    ("functions-http", {"no_auth": True}, "--no-auth: does not apply to functions-http"),
    ("webservice", {"auth_level": "function"}, "--auth-level: does not apply to webservice"),
])
def test_options_that_do_not_fit_are_listed(name, kwargs, text):
    with pytest.raises(ConfigError, match=text):
        parse_target(name, **kwargs)


def test_unknown_targets_say_so_and_fpga_takes_its_options_only():
    assert parse_target("fpga", profile="ve2-vaiml", cpu_model="cnn:1", no_auth=True) == FpgaTarget(
        profile="ve2-vaiml", cpu_model="cnn:1", auth=False)
    with pytest.raises(ConfigError, match="--profile: does not apply to webservice"):
        parse_target("webservice", profile="ve2-vaiml")
    with pytest.raises(ConfigError, match="unknown target") as info:
        parse_target("lambda")
    assert "webservice" in info.value.hint


def test_blob_target_paths():
    target = parse_target("functions-blob", input_path="input/{blobname}.json",
                          output_path="output/{blobname}_out.json")
    assert (target.input_path, target.output_path, target.connection) == (
        "input/{blobname}.json", "output/{blobname}_out.json", "AzureWebJobsStorage")
    assert parse_target("functions-blob", input_path="%IN%/{name}", output_path="%OUT%/{name}.json",
                        connection="STORAGE").connection == "STORAGE"


@pytest.mark.parametrize("kwargs,text", [
    ({"output_path": "out/{x}"}, "--input-path: required"),
    ({"input_path": "{c}/{name}", "output_path": "out/{name}"}, "container part '{c}' cannot hold an expression"),
    ({"input_path": "in/{name}", "output_path": "out/{other}"}, "'{other}' is not captured by --input-path"),
    ({"input_path": "in/{name}", "output_path": "in/x-{name}"}, "must be in another container"),
    ({"input_path": "In_Put/{name}", "output_path": "out/{name}"}, "'In_Put' is not a valid container name"),
    ({"input_path": "in/{name}", "output_path": "out/{name}", "auth_level": "admin"},
     "--auth-level: does not apply to functions-blob"),
])
def test_blob_target_problems(kwargs, text):
    with pytest.raises(ConfigError) as info:
        parse_target("functions-blob", **kwargs)
    assert any(text in p for p in info.value.problems), info.value.problems


def test_servicebus_target():
    target = parse_target("functions-servicebus", input_queue="in", output_queue="%OUT_QUEUE%", connection="SB")
    assert (target.input_queue, target.output_queue, target.connection) == ("in", "%OUT_QUEUE%", "SB")
    with pytest.raises(ConfigError) as info:
        parse_target("functions-servicebus", output_queue="out")
    assert info.value.problems == ("--input-queue: required for functions-servicebus",)
    with pytest.raises(ConfigError, match="must differ"):
        parse_target("functions-servicebus", input_queue="q", output_queue="q")


def test_iot_edge_target_endpoints():
    assert parse_target("iot-edge") == IoTEdgeTarget("input1", "output1")
    assert parse_target("iot-edge", module_input="camera", module_output="scores").module_output == "scores"
    with pytest.raises(ConfigError) as info:
        parse_target("iot-edge", module_input="bad name", input_queue="q")
    assert any("--module-input" in p for p in info.value.problems)
    assert any("--input-queue: does not apply" in p for p in info.value.problems)
