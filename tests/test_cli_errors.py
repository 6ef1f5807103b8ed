"""Bad input through the CLI: a named error and a hint on stderr, exit 1, no traceback, nothing written."""

from __future__ import annotations

import json

import pytest

from tests.project import make_model, make_project, run_cli


def _assert_user_error(code: int, err: str, *needles: str) -> None:
    assert code == 1, err
    assert err.startswith("error: "), err
    assert "\nhint: " in err, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


@pytest.fixture
def registered(tmp_path, edgepack_home, capsys):
    config = make_project(tmp_path / "proj")
    assert run_cli(["model", "register", "m", str(make_model(tmp_path / "model.onnx", seed=5))], capsys)[0] == 0
    return config


def test_missing_model_path(edgepack_home, capsys, tmp_path):
    code, out, err = run_cli(["model", "register", "m", str(tmp_path / "nope.onnx")], capsys)
    _assert_user_error(code, err, "nope.onnx", "does not exist")
    assert out == ""


def test_invalid_onnx(edgepack_home, capsys, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00not a model at all")
    code, _, err = run_cli(["model", "register", "m", str(bad)], capsys)
    _assert_user_error(code, err, "checking onnx model 'bad.onnx'")
    assert not (edgepack_home / "models" / "m" / "1").exists()


def test_unknown_model_version(registered, capsys):
    code, _, err = run_cli(["package", "--model", "m:7", "--inference-config", str(registered),
                            "--target", "webservice"], capsys)
    _assert_user_error(code, err, "'m:7'", "no such version", "Available versions: 1")


def test_config_typo_and_entry_script_without_run_are_listed_together(registered, capsys, tmp_path):
    data = json.loads(registered.read_text())
    data["entryScirpt"] = data.pop("entryScript")
    registered.write_text(json.dumps(data))
    code, _, err = run_cli(["plan", "--model", "m", "--inference-config", str(registered), "--target",
                            "webservice"], capsys)
    _assert_user_error(code, err, "entryScirpt: unknown key (did you mean 'entryScript'?)", "entryScript: required")
    data["entryScript"] = data.pop("entryScirpt")
    (registered.parent / "src" / "score.py").write_text("def init():\n    pass\n")
    registered.write_text(json.dumps(data))
    code, _, err = run_cli(["plan", "--model", "m", "--inference-config", str(registered), "--target",
                            "webservice"], capsys)
    _assert_user_error(code, err, "'score.py' defines no run() function")


def test_plan_prints_json_for_a_good_config(registered, capsys):
    code, out, err = run_cli(["plan", "--model", "m", "--inference-config", str(registered), "--target",
                              "functions-http", "--auth-level", "anonymous"], capsys)
    assert code == 0, err
    plan = json.loads(out)
    assert plan["target"] == "functions-http"
    assert [layer["name"] for layer in plan["layers"]] == ["python-dependencies", "edgepack-runtime", "source", "model"]


def test_usage_errors_exit_2(capsys):
    code, _, err = run_cli(["package", "--target", "nowhere"], capsys)
    assert code == 2
    assert "Traceback" not in err


def test_push_needs_a_tag(registered, capsys, tmp_path):
    code, _, err = run_cli(["package", "--model", "m", "--inference-config", str(registered), "--target",
                            "webservice", "--push"], capsys)
    _assert_user_error(code, err, "--push")


def test_base_registry_password_comes_from_the_named_variable(registered, capsys):
    data = json.loads(registered.read_text())
    data["baseImageRegistry"] = {"address": "https://reg.example", "username": "u", "passwordEnv": "EP_TEST_PW"}
    registered.write_text(json.dumps(data))
    code, _, err = run_cli(["package", "--model", "m", "--inference-config", str(registered), "--target",
                            "webservice"], capsys)
    _assert_user_error(code, err, "baseImageRegistry.passwordEnv: 'EP_TEST_PW' is not set", "Export EP_TEST_PW")
    data["baseImageRegistry"]["password"] = "literal"
    registered.write_text(json.dumps(data))
    code, _, err = run_cli(["plan", "--model", "m", "--inference-config", str(registered), "--target",
                            "webservice"], capsys)
    _assert_user_error(code, err, "baseImageRegistry.password: secrets are not kept in config files")
    assert "literal" not in err


@pytest.mark.parametrize("args, needle", [
    (["model", "show", "m:\u00b2"], "version must be a positive integer"),
    (["model", "register", "m\n", "MODEL"], "invalid model name"),
    (["model", "download", "m:1", "/proc/edgepack-cannot-write-here"], "/proc/edgepack-cannot-write-here"),
])
def test_bad_model_arguments_are_errors_not_tracebacks(registered, tmp_path, capsys, args, needle):
    args = [str(make_model(tmp_path / "x.onnx", seed=1)) if a == "MODEL" else a for a in args]
    code, _, err = run_cli(args, capsys)
    _assert_user_error(code, err, needle)


@pytest.mark.parametrize("epoch", ["abc", "-5", "99999999999999999999", "1.5"])
def test_a_bad_source_date_epoch_is_named(registered, capsys, monkeypatch, epoch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", epoch)
    code, _, err = run_cli(["package", "--model", "m", "--inference-config", str(registered), "--target",
                            "webservice", "--base-image", "127.0.0.1:9/none:1"], capsys)
    _assert_user_error(code, err, f"reading SOURCE_DATE_EPOCH '{epoch}'")


@pytest.mark.parametrize("tag, needle", [("127.0.0.1:5000/r:t\u00e9", "parsing image reference"),
                                         ("127.0.0.1:5000/r:1@sha256:" + "a" * 64, "names a tag, not a digest")])
def test_bad_destination_tags_are_refused_before_building(registered, capsys, tag, needle):
    code, _, err = run_cli(["package", "--model", "m", "--inference-config", str(registered), "--target",
                            "webservice", "--base-image", "127.0.0.1:9/none:1", "--tag", tag, "--push"], capsys)
    _assert_user_error(code, err, needle)
