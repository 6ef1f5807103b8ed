"""End to end on the real engine and registry: package, push, run and score, as a user would from the CLI."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import numpy as np
import pytest

from tests.project import expected, make_model, make_project, run_cli

pytestmark = pytest.mark.integration


def _post(url: str, body: dict, headers: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture
def project(tmp_path, edgepack_home, capsys):
    model = make_model(tmp_path / "v1" / "model.onnx", seed=1)
    config = make_project(tmp_path)
    code, out, err = run_cli(["model", "register", "linear", str(model), "--tag", "kind=test"], capsys)
    assert code == 0, err
    assert out.startswith("linear:1 sha256:")
    return {"root": tmp_path, "config": config, "model": model}


def _package(capsys, project, *extra: str) -> tuple[int, str, str]:
    return run_cli(["package", "--model", "linear", "--inference-config", str(project["config"]), *extra], capsys)


def test_same_inputs_give_the_same_digest_even_with_a_cold_cache(project, base_image_ref, capsys, monkeypatch,
                                                                  tmp_path):
    args = ("--target", "webservice", "--base-image", base_image_ref, "--json")
    code, out, err = _package(capsys, project, *args, "--output", str(tmp_path / "a"))
    assert code == 0, err
    first = json.loads(out)
    # A second home has an empty cache: every layer is rebuilt from scratch, and the digest must not move.
    other_home = tmp_path / "other-home"
    monkeypatch.setenv("EDGEPACK_HOME", str(other_home))
    code, out, err = run_cli(["model", "register", "linear", str(project["model"])], capsys)
    assert code == 0, err
    code, out, err = _package(capsys, project, *args, "--output", str(tmp_path / "b"))
    assert code == 0, err
    second = json.loads(out)
    assert second["digest"] == first["digest"]
    assert second["layers"] == first["layers"]
    assert (tmp_path / "a" / "index.json").read_bytes() == (tmp_path / "b" / "index.json").read_bytes()


def test_layout_is_valid_for_skopeo_and_umoci(project, base_image_ref, capsys, tmp_path):
    out_dir = tmp_path / "layout"
    code, out, err = _package(capsys, project, "--target", "webservice", "--base-image", base_image_ref,
                              "--output", str(out_dir), "--tag", "127.0.0.1:5000/e2e/linear:1")
    assert code == 0, err
    inspect = subprocess.run(["skopeo", "inspect", "--raw", f"oci:{out_dir}:1"], capture_output=True, text=True)
    assert inspect.returncode == 0, inspect.stderr
    manifest = json.loads(inspect.stdout)
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    config = json.loads(subprocess.run(["skopeo", "inspect", "--config", f"oci:{out_dir}:1"], capture_output=True,
                                       text=True, check=True).stdout)
    labels = config["config"]["Labels"]
    assert labels["io.edgepack.model.name"] == "linear" and labels["io.edgepack.model.version"] == "1"
    stat = subprocess.run(["umoci", "stat", "--image", f"{out_dir}:1"], capture_output=True, text=True)
    assert stat.returncode == 0, stat.stderr
    assert "edgepack: model linear:1" in stat.stdout


def test_push_run_and_score_webservice_and_function(project, base_image_ref, functions_base_image_ref,
                                                    dev_registry, docker_daemon, capsys):
    data = [[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 2.0, 0.0]]
    want = expected(project["model"], data)
    started = []
    try:
        for target, base, extra in (("webservice", base_image_ref, ()),
                                    ("functions-http", functions_base_image_ref, ("--auth-level", "function"))):
            tag = f"{dev_registry}/e2e/linear-{target}:1"
            code, out, err = _package(capsys, project, "--target", target, "--base-image", base, "--tag", tag,
                                      "--push", *extra)
            assert code == 0, err
            ref = out.strip().splitlines()[0]
            assert ref.startswith(f"{dev_registry}/e2e/linear-{target}@sha256:")
            assert subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{ref}"],
                                  capture_output=True).returncode == 0
            code, out, err = run_cli(["run", ref, "--json"], capsys)
            assert code == 0, err
            info = json.loads(out)
            started.append(info["name"])
            header = ({"Authorization": f"Bearer {info['keys']['primary']}"} if target == "webservice"
                      else {"x-functions-key": info["keys"]["primary"]})
            status, body = _post(info["url"], {"data": data}, header)
            assert status == 200, body
            np.testing.assert_allclose(body["result"], want, rtol=1e-5)
            status, body = _post(info["url"], {"data": data}, {"x-functions-key": "wrong",
                                                               "Authorization": "Bearer wrong"})
            assert status == 401 and "error" in body
            # Regenerating the secondary key leaves the primary working, without a restart.
            old_secondary = info["keys"]["secondary"]
            code, out, err = run_cli(["keys", info["name"], "--regenerate", "secondary"], capsys)
            assert code == 0, err
            new_keys = json.loads(out)
            assert new_keys["primary"] == info["keys"]["primary"] and new_keys["secondary"] != old_secondary
            with_key = (lambda k: {"Authorization": f"Bearer {k}"}) if target == "webservice" else \
                (lambda k: {"x-functions-key": k})
            assert _post(info["url"], {"data": data}, with_key(old_secondary))[0] == 401
            assert _post(info["url"], {"data": data}, with_key(new_keys["secondary"]))[0] == 200
            assert _post(info["url"], {"data": data}, header)[0] == 200
            wanted = "POST /score 200" if target == "webservice" else "invoked score: succeeded"
            for _ in range(30):  # the access log is written in batches, a few times a second
                code, out, err = run_cli(["logs", info["name"]], capsys)
                if code != 0 or wanted in out:
                    break
                time.sleep(0.1)
            assert code == 0 and wanted in out
    finally:
        for name in started:
            run_cli(["stop", name], capsys)
