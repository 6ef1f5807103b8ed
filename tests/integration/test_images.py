"""Built images on the real engine: the Dockerfile context gives the same files, the function app indexes
inside its image, and an unresolvable requirement fails before anything is written."""

from __future__ import annotations

import json

import pytest

from tests.project import make_model, make_project, run_cli
from tests.triggers.test_indexing import CASES

pytestmark = pytest.mark.integration

LIST_FILES = ("import hashlib, json, os\n"
              "out = {}\n"
              "for root in ('/opt/edgepack', '/app', '/home/site/wwwroot'):\n"
              "    for d, _, files in os.walk(root):\n"
              "        for f in files:\n"
              "            p = os.path.join(d, f)\n"
              "            digest = hashlib.sha256(open(p, 'rb').read()).hexdigest()\n"
              "            out[p] = [digest, oct(os.stat(p).st_mode & 0o777)]\n"
              "print(json.dumps(out, sort_keys=True))\n")
INDEX_APP = ("import json\n"
             "from triggers.host import load_app, function_json\n"
             "print(json.dumps([[f.name, function_json(f)] for f in load_app('/home/site/wwwroot')]))\n")


@pytest.fixture
def project(tmp_path, edgepack_home, capsys):
    config = make_project(tmp_path / "proj")
    assert run_cli(["model", "register", "m", str(make_model(tmp_path / "model.onnx", seed=21))], capsys)[0] == 0
    return config


def _in_image(daemon, image: str, script: str) -> str:
    out = daemon.client.containers.run(image, ["python3", "-c", script], remove=True, entrypoint=[])
    return out.decode()


def test_dockerfile_context_builds_an_image_with_the_same_files(project, base_image_ref, docker_daemon, capsys,
                                                                 tmp_path):
    layout, context = tmp_path / "layout", tmp_path / "ctx"
    code, out, err = run_cli(["package", "--model", "m", "--inference-config", str(project), "--target",
                              "webservice", "--base-image", base_image_ref, "--output", str(layout),
                              "--dockerfile-context", str(context), "--json"], capsys)
    assert code == 0, err
    dockerfile = (context / "Dockerfile").read_text()
    assert dockerfile.splitlines()[1].startswith(f"FROM {base_image_ref.rsplit(':', 1)[0]}@sha256:")
    docker_daemon.load_layout(layout, "edgepack-test/daemonless:1")
    docker_daemon.build_context(context, "edgepack-test/dockerfile:1")
    ours = json.loads(_in_image(docker_daemon, "edgepack-test/daemonless:1", LIST_FILES))
    theirs = json.loads(_in_image(docker_daemon, "edgepack-test/dockerfile:1", LIST_FILES))
    assert "/opt/edgepack/site-packages/onnxruntime/__init__.py" in ours
    assert "/app/azureml-models/m/1/model.onnx" in ours
    assert ours == theirs
    one, two = (docker_daemon.inspect_image(t)["Config"] for t in ("edgepack-test/daemonless:1",
                                                                     "edgepack-test/dockerfile:1"))
    assert sorted(one["Env"]) == sorted(two["Env"])
    assert one["Entrypoint"] == two["Entrypoint"] and one["Labels"] == two["Labels"]


@pytest.mark.parametrize("target", sorted(CASES))
def test_function_app_indexes_inside_the_image(project, functions_base_image_ref, docker_daemon, capsys, tmp_path,
                                               target):
    options, bindings = CASES[target]
    flags = [x for key, value in options.items() for x in (f"--{key.replace('_', '-')}", value)]
    layout = tmp_path / "fn"
    code, out, err = run_cli(["package", "--model", "m", "--inference-config", str(project), "--target", target,
                              *flags, "--base-image", functions_base_image_ref, "--output", str(layout)], capsys)
    assert code == 0, err
    docker_daemon.load_layout(layout, f"edgepack-test/{target}:1")
    indexed = json.loads(_in_image(docker_daemon, f"edgepack-test/{target}:1", INDEX_APP))
    assert indexed == [["score", {"scriptFile": "function_app.py", "bindings": bindings}]]


def test_unresolvable_requirement_fails_with_pip_reason_and_writes_nothing(project, base_image_ref, capsys,
                                                                           tmp_path):
    config = make_project(tmp_path / "broken", requirements=("edgepack-no-such-package-zz9==9.9",))
    out_dir = tmp_path / "never"
    code, out, err = run_cli(["package", "--model", "m", "--inference-config", str(config), "--target",
                              "webservice", "--base-image", base_image_ref, "--output", str(out_dir)], capsys)
    assert code == 1
    assert err.startswith("error: resolving python requirements") and "edgepack-no-such-package-zz9" in err
    assert "hint: " in err and "Traceback" not in err
    assert not out_dir.exists()
